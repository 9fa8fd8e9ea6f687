//! Guards against tail recovery losing or inventing data: a crash can leave a segment cut at
//! any byte, or followed by zeros or garbage. Reopening must keep every complete record, move
//! exactly the unreadable bytes to `quarantine/` before cutting them (nothing when the cut
//! falls on a record boundary), and leave a chain that the next append continues and a scan
//! verifies without a single error. A cut inside the bytes a signed index covers is not crash
//! damage (an index covers fsynced bytes only): there every cut must seal the segment as it is,
//! keep the index unchanged, and continue the month past every seq the index vouches for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlog::workload::Rng;
use auditlog::{Durability, Event, Keyring, Log, Options, OrgId, Receipt, RecoveryAction};
use support::{assert_verifies, copy_dir, file_names, keys_for, org, scan_clean, workload};

const ORG: &str = "acme";
/// How many trailing records are cut at every byte.
const CUT_RECORDS: usize = 3;

/// A cleanly closed log holding realistic events for one (org, month).
struct Original {
    _dir: tempfile::TempDir,
    log_dir: PathBuf,
    keys: Arc<Keyring>,
    receipts: Vec<Receipt>,
    /// Start offset of every record, then the file length.
    bounds: Vec<u64>,
    seg_name: String,
    seg_bytes: Vec<u8>,
}

/// A scratch directory for the many copies: tmpfs when there is one (this test opens about
/// two thousand logs, and every open and close fsyncs), else the default temporary
/// directory. The flag says which.
fn scratch() -> (tempfile::TempDir, bool) {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return (d, true);
    }
    (tempfile::tempdir().unwrap(), false)
}

fn events(n: u64) -> Vec<Event> {
    // All in January 2026, for one org; sizes vary as in the reference workload.
    workload(n, 1, 28, 3)
        .into_iter()
        .map(|mut e| {
            e.org_id = ORG.into();
            e
        })
        .collect()
}

fn opts(keys: &Arc<Keyring>) -> Options {
    Options::new(keys.clone())
        .durability(Durability::Never)
        .personal_data(["/after/email"])
}

/// Twelve records. With `crashed`, the sidecar index covers only the first nine, as a
/// writer killed after appending the last three leaves it (the index is rewritten at
/// close); otherwise the index of a clean close covers all twelve, and a cut makes the
/// file shorter than the index says (which no crash does).
fn original(crashed: bool) -> Original {
    let (dir, _) = scratch();
    let log_dir = dir.path().join("log");
    let keys = keys_for(&[ORG]);
    let all = events(12);
    let (first, rest) = all.split_at(12 - CUT_RECORDS);
    let log = Log::open(&log_dir, opts(&keys)).unwrap();
    let mut receipts = log.append_batch(first).unwrap();
    log.close().unwrap();
    let idx = log_dir.join(ORG).join("2026-01.idx");
    let early_index = fs::read(&idx).unwrap();
    let log = Log::open(&log_dir, opts(&keys)).unwrap();
    receipts.extend(log.append_batch(rest).unwrap());
    log.close().unwrap();
    if crashed {
        fs::write(&idx, early_index).unwrap();
    }
    let log = Log::open_read_only(&log_dir, opts(&keys)).unwrap();
    let o = org(ORG);
    let segs = log.segments(&o).unwrap();
    assert_eq!(segs.len(), 1, "one month, one segment");
    let seg_path = log.segment_path(&o, segs[0]);
    let read = scan_clean(&log, &o);
    assert_eq!(read.len(), receipts.len());
    let seg_bytes = fs::read(&seg_path).unwrap();
    let mut bounds: Vec<u64> = read.iter().map(|v| v.offset).collect();
    bounds.push(seg_bytes.len() as u64);
    Original {
        _dir: dir,
        log_dir,
        keys,
        receipts,
        bounds,
        seg_name: seg_path.file_name().unwrap().to_string_lossy().into_owned(),
        seg_bytes,
    }
}

/// What recovery is expected to have done to a damaged copy.
struct Expect {
    /// Complete records that must survive.
    kept: usize,
    /// Bytes that must have been moved to quarantine (empty: nothing moved).
    quarantined: Vec<u8>,
}

/// Copies the original, lets `damage` change its segment file, reopens with `Log::open`, and
/// checks recovery, the quarantine, a following append, and a full scan.
fn check_copy(orig: &Original, work: &Path, damage: impl FnOnce(&Path), expect: &Expect) {
    let log_dir = work.join("log");
    copy_dir(&orig.log_dir, &log_dir);
    let o: OrgId = org(ORG);
    let seg = log_dir.join(ORG).join(&orig.seg_name);
    damage(&seg);
    let damaged_len = fs::metadata(&seg).unwrap().len();
    let keep_end = orig.bounds[expect.kept];

    let log = Log::open(&log_dir, opts(&orig.keys)).unwrap();
    let report = log.recovery_report();
    let torn: Vec<_> = report
        .iter()
        .filter_map(|a| match a {
            RecoveryAction::TornTailQuarantined {
                file,
                offset,
                len,
                moved_to,
            } => Some((file.clone(), *offset, *len, moved_to.clone())),
            _ => None,
        })
        .collect();
    assert!(
        !report
            .iter()
            .any(|a| matches!(a, RecoveryAction::SegmentSealed { .. })),
        "a torn tail must not seal the segment: {report:?}"
    );
    let qdir = log_dir.join(ORG).join("quarantine");
    if expect.quarantined.is_empty() {
        assert!(torn.is_empty(), "nothing to quarantine, got {report:?}");
        assert!(file_names(&qdir).is_empty(), "{:?}", file_names(&qdir));
    } else {
        assert_eq!(torn.len(), 1, "{report:?}");
        let (file, offset, len, moved_to) = &torn[0];
        assert_eq!(file, &seg);
        assert_eq!(
            *offset, keep_end,
            "torn tail starts after the last complete record"
        );
        assert_eq!(*len, damaged_len - keep_end);
        assert_eq!(moved_to.parent(), Some(qdir.as_path()));
        assert_eq!(file_names(&qdir).len(), 1);
        assert_eq!(
            fs::read(moved_to).unwrap(),
            expect.quarantined,
            "quarantine holds exactly the cut bytes"
        );
    }
    assert_eq!(fs::metadata(&seg).unwrap().len(), keep_end);
    assert_eq!(
        fs::read(&seg).unwrap(),
        orig.seg_bytes[..keep_end as usize],
        "the kept prefix is untouched"
    );

    // The chain continues: the next append takes the next seq.
    let next = events(1).remove(0);
    let r = log.append(&next).unwrap();
    assert_eq!(r.seq, expect.kept as u64);
    log.close().unwrap();

    let log = Log::open_read_only(&log_dir, opts(&orig.keys)).unwrap();
    let read = scan_clean(&log, &o);
    assert_eq!(read.len(), expect.kept + 1);
    for (v, rc) in read.iter().zip(&orig.receipts[..expect.kept]) {
        assert_eq!((v.month, v.seq, v.hash), (rc.month, rc.seq, rc.hash));
    }
    let last = read.last().unwrap();
    assert_eq!((last.seq, last.hash), (r.seq, r.hash));
    assert_eq!(last.event, next);
    assert_verifies(&log_dir, &*orig.keys);
}

#[test]
fn cut_at_every_byte_of_the_last_records_after_a_crash() {
    cut_at_every_byte(&original(true));
}

/// Every cut of a cleanly closed segment falls inside its index's range: none is a torn
/// tail, and each one is sealed, never cut, rebuilt or resumed over.
#[test]
fn cut_at_every_byte_of_the_last_records_of_a_closed_segment() {
    let orig = original(false);
    let n = orig.receipts.len();
    let exhaustive = scratch().1;
    let near_boundary = |cut: u64| orig.bounds.iter().any(|&b| b.abs_diff(cut) <= 32);
    let first_cut = orig.bounds[n - CUT_RECORDS];
    for cut in
        (first_cut..orig.bounds[n]).filter(|&c| exhaustive || near_boundary(c) || c % 23 == 0)
    {
        let (work, _) = scratch();
        check_sealed_copy(&orig, work.path(), cut);
    }
}

/// Copies the original, cuts its segment at `cut` (inside the range its index covers),
/// reopens with `Log::open` and appends: the segment is sealed as it is, its index is left
/// unchanged, nothing is quarantined, the new record's seq is past every seq the index
/// vouches for, and `verify` goes on reporting the cut.
fn check_sealed_copy(orig: &Original, work: &Path, cut: u64) {
    let log_dir = work.join("log");
    copy_dir(&orig.log_dir, &log_dir);
    let seg = log_dir.join(ORG).join(&orig.seg_name);
    let idx = seg.with_extension("idx");
    let index = fs::read(&idx).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let log = Log::open(&log_dir, opts(&orig.keys)).unwrap();
    let r = log.append(&events(1).remove(0)).unwrap();
    let report = log.recovery_report();
    log.close().unwrap();
    assert!(
        report
            .iter()
            .any(|a| matches!(a, RecoveryAction::SegmentSealed { file, .. } if file == &seg)),
        "cut at {cut}: {report:?}"
    );
    assert!(
        !report.iter().any(|a| matches!(
            a,
            RecoveryAction::TornTailQuarantined { .. } | RecoveryAction::IndexRebuilt { .. }
        )),
        "cut at {cut}: {report:?}"
    );
    assert_eq!(fs::read(&seg).unwrap(), orig.seg_bytes[..cut as usize]);
    assert_eq!(fs::read(&idx).unwrap(), index, "cut at {cut}: index kept");
    assert!(
        r.seq >= orig.receipts.len() as u64,
        "cut at {cut}: seq {} reissued",
        r.seq
    );
    let report = auditlog::verify::verify(
        &log_dir,
        Some(&*orig.keys),
        &auditlog::verify::VerifyOptions::default(),
    )
    .unwrap();
    assert!(!report.is_intact(), "cut at {cut}: still a finding");
}

fn cut_at_every_byte(orig: &Original) {
    let n = orig.receipts.len();
    let first_cut = orig.bounds[n - CUT_RECORDS];
    let end = orig.bounds[n];
    // Without tmpfs every cut costs a dozen real fsyncs: then cut at every byte near a
    // record boundary (where the interesting cases are) and at every 23rd byte elsewhere.
    let exhaustive = scratch().1;
    let near_boundary = |cut: u64| orig.bounds.iter().any(|&b| b.abs_diff(cut) <= 32);
    let mut boundaries = 0;
    for cut in (first_cut..end).filter(|&c| exhaustive || near_boundary(c) || c % 23 == 0) {
        // Records that end at or before the cut survive.
        let kept = orig.bounds[1..].iter().filter(|&&end| end <= cut).count();
        let keep_end = orig.bounds[kept];
        if keep_end == cut {
            boundaries += 1;
        }
        let expect = Expect {
            kept,
            quarantined: orig.seg_bytes[keep_end as usize..cut as usize].to_vec(),
        };
        let (work, _) = scratch();
        check_copy(
            orig,
            work.path(),
            |seg| {
                OpenOptions::new()
                    .write(true)
                    .open(seg)
                    .unwrap()
                    .set_len(cut)
                    .unwrap();
            },
            &expect,
        );
    }
    assert_eq!(
        boundaries, CUT_RECORDS,
        "cuts on record boundaries were tested"
    );
}

fn append_bytes(seg: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn zeros_and_garbage_after_the_tail() {
    let orig = original(true);
    let n = orig.receipts.len();
    let mut rng = Rng::new(99);
    let mut garbage = |len: usize| -> Vec<u8> { (0..len).map(|_| rng.next_u64() as u8).collect() };
    let mut tails: Vec<Vec<u8>> = vec![
        vec![0; 1],
        vec![0; 3],
        vec![0; 4],
        vec![0; 100],
        vec![0; 4096],
        vec![0xff; 64],
        garbage(1),
        garbage(37),
        garbage(5000),
    ];
    // A frame length that claims far more than is there, and one that is in range but
    // fails its CRC.
    let mut long = 1_000_000u32.to_le_bytes().to_vec();
    long.extend(garbage(200));
    tails.push(long);
    let mut short = 300u32.to_le_bytes().to_vec();
    short.extend(garbage(400));
    tails.push(short);
    for tail in tails {
        let (work, _) = scratch();
        let expect = Expect {
            kept: n,
            quarantined: tail.clone(),
        };
        check_copy(&orig, work.path(), |seg| append_bytes(seg, &tail), &expect);
    }

    // A record torn in the middle and then zero-filled to the next 4 KiB page, as a file
    // system can leave it after a power loss.
    let last = orig.bounds[n - 1];
    let cut = last + (orig.bounds[n] - last) / 2;
    let padded = cut.next_multiple_of(4096).max(cut + 1);
    let mut quarantined = orig.seg_bytes[last as usize..cut as usize].to_vec();
    quarantined.resize((padded - last) as usize, 0);
    let (work, _) = scratch();
    check_copy(
        &orig,
        work.path(),
        |seg| {
            let f = OpenOptions::new().write(true).open(seg).unwrap();
            f.set_len(cut).unwrap();
            f.set_len(padded).unwrap();
        },
        &Expect {
            kept: n - 1,
            quarantined,
        },
    );
}
