//! Guards against "repairing" corruption by truncation (fjall issue 311, Kafka's deletion of
//! later segments): a byte flipped inside a complete record of a segment must never cause
//! the records after it, or the damaged record itself, to be cut or deleted. The engine must
//! seal the damaged file unchanged, report the damaged range, write a damage report to
//! `quarantine/`, and continue the month in `YYYY-MM.1.seg` with seqs after the largest seq of
//! the damaged file, so that no seq is ever issued twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::verify::{
    CheckpointOptions, FindingKind, Severity, VerifyOptions, make_checkpoint, make_checkpoint_with,
    verify,
};
use auditlog::{
    Durability, Error, Event, Keyring, Log, Options, OrgId, Receipt, RecoveryAction, VerifiedEvent,
};
use support::{
    february_of, fix_crc, fix_header_crc, january_of, keys_for, month, org, rechain, records, scan,
};

const ORG: &str = "acme";

fn opts(keys: &Arc<Keyring>) -> Options {
    Options::new(keys.clone())
        .durability(Durability::Never)
        .personal_data(["/after/email"])
}

/// `n` realistic events of `ORG`, all in January 2026.
fn january(n: u64, seed: u64) -> Vec<Event> {
    january_of(ORG, n, seed)
}

/// [`january`]'s events, 31 days later: all in February 2026.
fn february(n: u64, seed: u64) -> Vec<Event> {
    february_of(ORG, n, seed)
}

struct Setup {
    dir: tempfile::TempDir,
    keys: Arc<Keyring>,
    receipts: Vec<Receipt>,
    records: Vec<VerifiedEvent>,
    seg: PathBuf,
}

/// A cleanly closed log with 30 records in January and 5 in February.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(dir.path(), opts(&keys)).unwrap();
    let receipts = log.append_batch(&january(30, 5)).unwrap();
    log.append_batch(&february(5, 6)).unwrap();
    log.close().unwrap();
    let log = Log::open_read_only(dir.path(), opts(&keys)).unwrap();
    let (read, errs) = scan(&log, &org(ORG));
    assert!(errs.is_empty());
    let records: Vec<VerifiedEvent> = read
        .into_iter()
        .filter(|v| v.month == month("2026-01"))
        .collect();
    assert_eq!(records.len(), 30);
    let seg = dir.path().join(ORG).join("2026-01.seg");
    Setup {
        dir,
        keys,
        receipts,
        records,
        seg,
    }
}

/// Appends to `path` a copy of its last frame claiming seq `seq`, its CRC fixed (a keyless
/// forger's record); returns the file's new bytes.
fn forge_last_seq(path: &Path, seq: u64) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    let last = *records(&bytes).last().unwrap();
    let mut forged = bytes[last.off..last.end()].to_vec();
    forged[8..16].copy_from_slice(&seq.to_le_bytes());
    let at = bytes.len();
    bytes.extend_from_slice(&forged);
    fix_crc(&mut bytes, at);
    fs::write(path, &bytes).unwrap();
    bytes
}

fn flip(path: &Path, at: u64) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x20;
    fs::write(path, &bytes).unwrap();
    bytes
}

/// The sealing recorded in `report` (exactly one).
fn sealed(report: &[RecoveryAction]) -> (PathBuf, Vec<(u64, u64, String)>, PathBuf) {
    let s: Vec<_> = report
        .iter()
        .filter_map(|a| match a {
            RecoveryAction::SegmentSealed {
                file,
                damage,
                continuation,
            } => Some((file.clone(), damage.clone(), continuation.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(s.len(), 1, "exactly one segment sealed: {report:?}");
    assert!(
        !report
            .iter()
            .any(|a| matches!(a, RecoveryAction::TornTailQuarantined { .. })),
        "damage inside the file is not a torn tail: {report:?}"
    );
    s.into_iter().next().unwrap()
}

/// Everything the brief requires after the damaged segment was sealed and the month
/// continued: `flipped` is the damaged byte, `damaged` the damaged file's bytes and
/// `victim` the damaged record.
fn check_sealed(s: &Setup, log: Log, flipped: u64, damaged: &[u8], victim: usize) {
    let o: OrgId = org(ORG);
    // The first append to the month recovers its segment (if open did not already).
    let more = january(3, 77);
    let rs = log.append_batch(&more).unwrap();
    let (file, damage, continuation) = sealed(&log.recovery_report());
    assert_eq!(file, s.seg);
    assert!(
        damage
            .iter()
            .any(|(start, end, _)| (*start..*end).contains(&flipped)),
        "damage {damage:?} does not cover byte {flipped}"
    );
    let cont = s.dir.path().join(ORG).join("2026-01.1.seg");
    assert_eq!(continuation, cont);

    // Nothing cut, nothing deleted, nothing rewritten.
    assert_eq!(fs::read(&s.seg).unwrap(), damaged);

    // The damage report is on disk.
    let report_path = s
        .dir
        .path()
        .join(ORG)
        .join("quarantine")
        .join("2026-01.seg.damage.json");
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(json["action"], "segment_sealed");
    assert_eq!(json["file"], s.seg.to_string_lossy().as_ref());

    // The continuation takes the month's appends, after the damaged file's largest seq.
    let seqs: Vec<u64> = rs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![30, 31, 32]);
    // Other months are untouched.
    let feb = Event {
        occurred_at: support::ts("2026-02-20"),
        ..more[0].clone()
    };
    assert_eq!(log.append(&feb).unwrap().seq, 5);
    log.close().unwrap();
    assert_eq!(fs::read(&s.seg).unwrap(), damaged, "sealed file unchanged");
    assert!(
        fs::metadata(&cont).unwrap().len() > 256,
        "records in the continuation"
    );

    // Reading: the damaged record is the only finding; every other record verifies, those
    // in the continuation included.
    let log = Log::open_read_only(s.dir.path(), opts(&s.keys)).unwrap();
    let (read, errs) = scan(&log, &o);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    match &errs[0] {
        Error::Corrupt { file, offset, .. } | Error::Integrity { file, offset, .. } => {
            assert_eq!(file, &s.seg);
            assert_eq!(*offset, s.records[victim].offset);
        }
        other => panic!("unexpected finding {other}"),
    }
    let jan: Vec<&VerifiedEvent> = read
        .iter()
        .filter(|v| v.month == month("2026-01"))
        .collect();
    assert_eq!(jan.len(), 30 - 1 + 3);
    for v in &jan {
        if v.seq < 30 {
            let r = &s.receipts[v.seq as usize];
            assert_eq!((v.part, v.hash), (0, r.hash));
        } else {
            let r = &rs[(v.seq - 30) as usize];
            assert_eq!((v.part, v.hash), (1, r.hash));
        }
    }
    assert!(!jan.iter().any(|v| v.seq == victim as u64));
    drop(log);

    // Full verification: the flipped byte is reported as corruption where it is, and it is
    // the only error: the continuation verifies, its link past the damage matches, and links
    // that cannot be followed through the damage are not reported as tampering.
    let report = verify(s.dir.path(), Some(&*s.keys), &VerifyOptions::default()).unwrap();
    assert!(!report.is_intact());
    let errors: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    let corrupt: Vec<_> = errors
        .iter()
        .filter(|f| f.kind == FindingKind::ChecksumCorruption)
        .collect();
    assert_eq!(corrupt.len(), 1, "{:#?}", report.findings);
    assert_eq!(corrupt[0].file, s.seg);
    assert!(corrupt[0].covers(flipped), "{:#?}", corrupt[0]);
    assert_eq!(errors.len(), 1, "{:#?}", report.findings);

    // A second reopen needs no recovery and keeps appending to the continuation.
    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    let r = log.append(&more[0]).unwrap();
    assert_eq!(r.seq, 33);
    assert!(
        log.recovery_report().is_empty(),
        "{:?}",
        log.recovery_report()
    );
    log.close().unwrap();
    assert_eq!(fs::read(&s.seg).unwrap(), damaged);
}

/// The segment was closed cleanly (its index covers it), so open does not rescan it; the
/// first append to the month checks it and must find the damage.
#[test]
fn flip_in_a_cleanly_closed_segment_is_found_at_first_append() {
    let s = setup();
    let victim = 15;
    let at = s.records[victim].offset + 64 + 7;
    let damaged = flip(&s.seg, at);
    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    check_sealed(&s, log, at, &damaged, victim);
}

/// Without a usable index, open rescans the segment and seals it right away.
#[test]
fn flip_in_a_segment_without_index_is_found_at_open() {
    let s = setup();
    fs::remove_file(s.dir.path().join(ORG).join("2026-01.idx")).unwrap();
    let victim = 10;
    let at = s.records[victim].offset + 200;
    let damaged = flip(&s.seg, at);
    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    let (file, _, _) = sealed(&log.recovery_report());
    assert_eq!(file, s.seg);
    check_sealed(&s, log, at, &damaged, victim);
}

/// The last record of a cleanly closed segment is covered by the signed index: it was
/// complete and durable, so a flipped byte in it is damage, not a torn tail. Cutting it
/// would also hand its seq to the next append, so that a receipt already given out would
/// name a different record.
#[test]
fn flip_in_the_last_indexed_record_is_not_a_torn_tail() {
    let s = setup();
    let victim = 29;
    let at = s.records[victim].offset + 64 + 3;
    let damaged = flip(&s.seg, at);
    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    check_sealed(&s, log, at, &damaged, victim);
}

/// Recovery keeps a damaged part, and `verify` reports its damage, for good. The org can
/// still be checkpointed, but only when the damage is accepted explicitly: the checkpoint then
/// pins the damaged part up to its first damage and every other segment whole. Verifying
/// against it adds no finding, cutting what it pinned is caught, and tampering still refuses.
#[test]
fn checkpoint_after_sealed_damage_needs_consent_and_pins_up_to_the_damage() {
    let s = setup();
    let victim = 10;
    flip(&s.seg, s.records[victim].offset + 70);
    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    log.append_batch(&january(3, 77)).unwrap();
    sealed(&log.recovery_report());
    log.close().unwrap();
    let o = org(ORG);

    let refused = make_checkpoint(s.dir.path(), &o, &*s.keys).unwrap_err();
    assert!(matches!(refused, Error::Integrity { .. }), "{refused}");
    let why = refused.to_string();
    assert!(
        why.contains("checksum_corruption") && why.contains("--accept-damage"),
        "{why}"
    );

    let accept = CheckpointOptions {
        accept_damage: true,
    };
    let cp = make_checkpoint_with(s.dir.path(), &o, &*s.keys, &accept).unwrap();
    let pinned: Vec<(&str, u64, Option<u64>)> = cp
        .segments
        .iter()
        .map(|p| (p.segment.as_str(), p.count, p.last_seq))
        .collect();
    assert_eq!(
        pinned,
        vec![
            ("2026-01", victim as u64, Some(victim as u64 - 1)),
            ("2026-01.1", 3, Some(32)),
            ("2026-02", 5, Some(4)),
        ]
    );
    assert_eq!(cp.segments[0].head, s.records[victim - 1].hash);

    let with_cp = VerifyOptions {
        checkpoints: vec![cp.clone()],
        ..VerifyOptions::default()
    };
    let kinds = |r: &auditlog::verify::Report| {
        let mut k: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        k.sort_by_key(|k| format!("{k:?}"));
        k
    };
    let report = verify(s.dir.path(), Some(&*s.keys), &with_cp).unwrap();
    assert_eq!(
        kinds(&report),
        vec![
            FindingKind::ChecksumCorruption,
            FindingKind::QuarantinedData
        ],
        "only the damage itself and the quarantine note: {:#?}",
        report.findings
    );

    // Tampering refuses even with the damage accepted: one tag byte of the continuation,
    // its CRC fixed.
    let cont = s.dir.path().join(ORG).join("2026-01.1.seg");
    let original = fs::read(&cont).unwrap();
    let mut bytes = original.clone();
    let last = *records(&bytes).last().unwrap();
    bytes[last.end() - 1] ^= 1;
    fix_crc(&mut bytes, last.off);
    fs::write(&cont, &bytes).unwrap();
    let refused = make_checkpoint_with(s.dir.path(), &o, &*s.keys, &accept).unwrap_err();
    assert!(refused.to_string().contains("tag_mismatch"), "{refused}");
    fs::write(&cont, &original).unwrap();

    // Cutting the damaged part before what the checkpoint pinned is caught.
    let f = fs::OpenOptions::new().write(true).open(&s.seg).unwrap();
    f.set_len(s.records[5].offset).unwrap();
    drop(f);
    let report = verify(s.dir.path(), Some(&*s.keys), &with_cp).unwrap();
    assert!(
        kinds(&report).contains(&FindingKind::TruncatedAgainstCheckpoint),
        "{:#?}",
        report.findings
    );
}

/// Review finding: January's authentic index covers 30 records; a keyless forger cuts the
/// file to 3 and alters each one's tag (CRCs fixed). Not one record verifies, yet the index
/// does: the keys are right, and the file contradicts signed evidence. Recovery refused the
/// month as a wrong keyring (`KeyError::WrongKey`), and with it every new month of the org.
/// It is sealed and continued past seq 29, like any file an authentic index contradicts.
#[test]
fn altered_tags_under_an_authentic_index_are_damage_not_a_wrong_key() {
    let s = setup();
    let mut bytes = fs::read(&s.seg).unwrap();
    let recs = records(&bytes);
    bytes.truncate(recs[2].end());
    for r in &recs[..3] {
        bytes[r.end() - 1] ^= 1;
        fix_crc(&mut bytes, r.off);
    }
    fs::write(&s.seg, &bytes).unwrap();

    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    let (file, _, _) = sealed(&log.recovery_report());
    assert_eq!(file, s.seg);
    assert_eq!(log.append_batch(&january(1, 92)).unwrap()[0].seq, 30);
    let mut march = february(1, 93);
    march[0].occurred_at.0 += 31 * 86_400_000_000;
    assert_eq!(log.append(&march[0]).unwrap().seq, 0);
    log.close().unwrap();
}

/// Review finding: with room for two more seqs in January, a batch of three January events
/// was refused naming the first, which `Log::append` accepts (and the CLI, trusting the
/// index, stopped there). The refusal names the event past the room: the third.
#[test]
fn a_batch_refused_for_seq_room_names_the_first_event_past_it() {
    let s = setup();
    forge_last_seq(&s.seg, u64::MAX - 3);

    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    let mut batch = february(1, 90);
    batch.extend(january(3, 91));
    match log.append_batch(&batch) {
        Err(Error::InBatch { index: 3, source }) => {
            assert!(matches!(*source, Error::SeqExhausted { .. }), "{source:?}")
        }
        other => panic!("{other:?}"),
    }
    for e in &batch[..3] {
        log.append(e).unwrap();
    }
    assert!(matches!(
        log.append(&batch[3]),
        Err(Error::SeqExhausted { .. })
    ));
    log.close().unwrap();
}

/// A keyless forger appends a copy of the last frame claiming seq 2^64 − 2, with its CRC
/// fixed. Recovery seals the part and starts the continuation at seq 2^64 − 1. A record
/// there would leave the next seq at 2^64, which an index's `first_seq + record_count`
/// cannot hold, and the one after would wrap to 0. So the month refuses appends with a typed
/// error and writes nothing, while other months go on. Every index the engine wrote still
/// decodes, and `verify` names the forgery, not the engine's own indexes.
#[test]
fn a_forged_seq_near_2_pow_64_makes_its_month_refuse_appends() {
    let s = setup();
    forge_last_seq(&s.seg, u64::MAX - 1);

    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    let err = log.append_batch(&january(2, 78)).unwrap_err();
    assert!(
        matches!(err.unbatched(), Error::SeqExhausted { next, .. } if *next == u64::MAX),
        "{err:?}"
    );
    // A batch with a group that sorts first (December 2025) fails whole, before that group
    // is written: a caller who retries duplicates nothing.
    let mut december = january(1, 80);
    december[0].occurred_at.0 -= 31 * 86_400_000_000;
    let both = [december, january(1, 81)].concat();
    let err = log.append_batch(&both).unwrap_err();
    assert!(
        matches!(err.unbatched(), Error::SeqExhausted { .. }),
        "{err:?}"
    );
    let (file, _, continuation) = sealed(&log.recovery_report());
    assert_eq!(file, s.seg);
    let rs = log.append_batch(&february(2, 79)).unwrap();
    assert_eq!(rs.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6]);
    log.close().unwrap();

    // Nothing was written to the continuation, nor to December.
    let cont = fs::read(&continuation).unwrap();
    assert_eq!(cont.len(), 256, "only the continuation's header");
    let dec = s.dir.path().join(ORG).join("2025-12.seg");
    assert!(fs::metadata(&dec).map_or(0, |m| m.len()) <= 256);
    for entry in fs::read_dir(s.dir.path().join(ORG)).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "idx") {
            let bytes = fs::read(&p).unwrap();
            assert!(
                auditlog::format::index::Index::decode(&bytes).is_ok(),
                "{} does not decode",
                p.display()
            );
        }
    }
    let report = verify(s.dir.path(), Some(&*s.keys), &VerifyOptions::default()).unwrap();
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::IndexMismatch),
        "{report:#?}"
    );
    assert!(
        report.findings.iter().any(|f| f.file == s.seg
            && matches!(
                f.kind,
                FindingKind::ChainBreak
                    | FindingKind::SeqDuplicate
                    | FindingKind::SeqGap
                    | FindingKind::SeqReorder
                    | FindingKind::TagMismatch
            )),
        "{report:#?}"
    );
}

/// A keyless forger renumbers February's records to end at seq 2^64 − 1, re-chained from a
/// header whose `first_seq` (CRC fixed) says where they start. The chain holds and only the
/// tags fail, so recovery does not seal the part, but no index of it can count its records
/// (`first_seq + record_count` = 2^64). The writer writes none and does not report one as
/// rebuilt, on any open; appends to February are refused; the old index stays as it was.
#[test]
fn a_segment_whose_seqs_reach_2_pow_64_is_left_without_an_index() {
    let s = setup();
    let feb = s.dir.path().join(ORG).join("2026-02.seg");
    let idx = feb.with_extension("idx");
    let old_index = fs::read(&idx).unwrap();
    let mut bytes = fs::read(&feb).unwrap();
    let first = u64::MAX - 4;
    bytes[104..112].copy_from_slice(&first.to_le_bytes());
    fix_header_crc(&mut bytes);
    for (i, r) in records(&bytes).into_iter().enumerate() {
        bytes[r.off + 8..r.off + 16].copy_from_slice(&(first + i as u64).to_le_bytes());
    }
    rechain(&mut bytes, 0);
    fs::write(&feb, &bytes).unwrap();

    for _ in 0..2 {
        let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
        let err = log.append_batch(&february(1, 82)).unwrap_err();
        assert!(
            matches!(err.unbatched(), Error::SeqExhausted { next, .. } if *next == u64::MAX),
            "{err:?}"
        );
        let report = log.recovery_report();
        assert!(
            !report.iter().any(|a| matches!(
                a,
                RecoveryAction::IndexRebuilt { file, .. } if *file == feb
            )),
            "{report:?}"
        );
        log.close().unwrap();
        assert_eq!(fs::read(&idx).unwrap(), old_index);
        assert_eq!(fs::read(&feb).unwrap(), bytes);
    }
    // January is untouched and still takes appends.
    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    let rs = log.append_batch(&january(1, 83)).unwrap();
    assert_eq!(rs[0].seq, 30);
}

/// The damaged part 0 deleted (with its index) beside its continuation: part 1's header
/// links to it and counts its records, so a query and stats report it missing. Only verify
/// did: the query returned part 1's records alone, and stats counted them, both exit 0.
#[test]
fn a_deleted_part_before_a_continuation_is_missing_not_silence() {
    let s = setup();
    let mut b = fs::read(&s.seg).unwrap();
    let mid = records(&b)[15];
    b[mid.off + 70] ^= 0x40;
    fs::write(&s.seg, &b).unwrap();
    let log = Log::open(s.dir.path(), opts(&s.keys)).unwrap();
    log.append_batch(&january(3, 8)).unwrap();
    log.close().unwrap();
    assert!(s.dir.path().join(ORG).join("2026-01.1.seg").exists());
    fs::remove_file(&s.seg).unwrap();
    fs::remove_file(s.seg.with_extension("idx")).unwrap();

    let log = Log::open_read_only(s.dir.path(), opts(&s.keys)).unwrap();
    let (_, errs, _) = support::run_query(log.query(&org(ORG)));
    assert!(
        errs.iter().any(|e| matches!(
            e,
            Error::Integrity { file, kind: auditlog::IntegrityKind::MissingSegment { .. }, .. }
                if *file == s.seg
        )),
        "{errs:#?}"
    );
    let stats = log.stats().unwrap();
    let jan = stats.iter().find(|m| m.month == month("2026-01")).unwrap();
    assert!(
        jan.damage
            .iter()
            .any(|d| d.kind == auditlog::DamageKind::Missing && d.file == s.seg),
        "{:?}",
        jan.damage
    );
    // `Log::scan` says it too, and still returns part 1's records.
    let (read, errs) = scan(&log, &org(ORG));
    assert!(
        errs.iter().any(|e| matches!(
            e,
            Error::Integrity { file, kind: auditlog::IntegrityKind::MissingSegment { .. }, .. }
                if *file == s.seg
        )),
        "{errs:#?}"
    );
    assert_eq!(read.iter().filter(|v| v.part == 1).count(), 3);
}

/// February's segment deleted, its signed index left: `Log::scan` reports the segment
/// missing, as a query does (it read on as if February had never held a record).
#[test]
fn scan_reports_a_segment_its_index_says_held_records() {
    let s = setup();
    let feb = s.dir.path().join(ORG).join("2026-02.seg");
    fs::remove_file(&feb).unwrap();
    let log = Log::open_read_only(s.dir.path(), opts(&s.keys)).unwrap();
    let (read, errs) = scan(&log, &org(ORG));
    assert_eq!(read.len(), 30, "January's records");
    assert!(
        matches!(errs.as_slice(), [Error::Integrity { file, .. }] if *file == feb),
        "{errs:#?}"
    );
}
