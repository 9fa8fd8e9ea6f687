//! A torn tail can be any length: a file extended past its last record (sparse, so free to
//! make, or left so by a crash over unwritten data) must be copied to quarantine exactly,
//! byte for byte, before it is cut. The copy goes through a bounded buffer (it used to read the
//! whole tail into memory: 512 MiB of tail, 528 MB RSS); this test checks the bytes, not the
//! memory, with a tail much larger than the copy's chunk and non-zero runs across chunk edges.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;

use auditlog::{Event, Log, RecoveryAction};
use support::{keys_for, workload};

const ORG: &str = "acme";
const MIB: u64 = 1 << 20;

fn events(n: u64, seed: u64) -> Vec<Event> {
    workload(n, 1, 28, seed)
        .into_iter()
        .map(|mut e| {
            e.org_id = ORG.into();
            e
        })
        .collect()
}

#[test]
fn a_sparse_tail_far_past_the_end_is_quarantined_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    log.append_batch(&events(20, 1)).unwrap();
    log.close().unwrap();
    let seg = dir.path().join(ORG).join("2026-01.seg");
    let original = fs::read(&seg).unwrap();
    let end = original.len() as u64;

    // 48 MiB and a bit of holes, with 0xff runs (never a valid frame length) at its start
    // and straddling 1 MiB edges of the tail; its last 2 MiB are zeros (the copy's length
    // must include them).
    let tail_len = 48 * MIB + 12_345;
    let runs: Vec<(u64, usize)> = vec![
        (0, 3),
        (MIB - 2, 5),
        (7 * MIB + 100, 70_000),
        (tail_len - 2 * MIB - 9, 9),
    ];
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(end + tail_len).unwrap();
    for &(at, n) in &runs {
        f.write_all_at(&vec![0xff; n], end + at).unwrap();
    }
    drop(f);
    let expected = |at: u64| -> u8 {
        let hit = runs.iter().any(|&(s, n)| (s..s + n as u64).contains(&at));
        if hit { 0xff } else { 0 }
    };

    let log = Log::open(dir.path(), support::never(&keys)).unwrap();
    let report = log.recovery_report();
    let torn: Vec<_> = report
        .iter()
        .filter_map(|a| match a {
            RecoveryAction::TornTailQuarantined {
                offset,
                len,
                moved_to,
                ..
            } => Some((*offset, *len, moved_to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(torn.len(), 1, "{report:?}");
    let (offset, len, moved_to) = torn[0].clone();
    assert_eq!((offset, len), (end, tail_len));
    assert_eq!(
        fs::read(&seg).unwrap(),
        original,
        "cut back to the last record"
    );

    // The copy, compared in chunks of an odd size (not aligned to the writer's).
    let copy = File::open(&moved_to).unwrap();
    assert_eq!(copy.metadata().unwrap().len(), tail_len);
    let mut buf = vec![0u8; 333_333];
    let mut at = 0u64;
    while at < tail_len {
        let n = buf.len().min((tail_len - at) as usize);
        copy.read_exact_at(&mut buf[..n], at).unwrap();
        for (i, b) in buf[..n].iter().enumerate() {
            let pos = at + i as u64;
            assert_eq!(
                *b,
                expected(pos),
                "quarantine copy differs at tail byte {pos}"
            );
        }
        at += n as u64;
    }

    // The month goes on where it left off.
    let r = log.append(&events(1, 2)[0]).unwrap();
    assert_eq!(r.seq, 20);
    log.close().unwrap();
}
