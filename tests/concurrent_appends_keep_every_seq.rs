//! Guards against races in the append path: two threads getting the same seq, a seq
//! skipped, a record whose chain link or tag was computed against another thread's state, a
//! buffered record lost between group commits, or a receipt that does not describe the record
//! that reached the disk. Eight threads append concurrently to one org across several months;
//! afterwards every (org, month) must hold seqs 0..n exactly once, every record must verify,
//! and every receipt must match its record's hash and content.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash as _, Hasher};
use std::sync::{Arc, Barrier};

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Hash, Log, Month, Options, Timestamp};
use support::{assert_verifies, keys_for, org, ts};

const ORG: &str = "acme";
const MONTHS: [&str; 4] = ["2026-01", "2026-02", "2026-03", "2026-04"];

/// A fingerprint of an event's full content.
fn fingerprint(e: &Event) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_vec(e).unwrap().hash(&mut h);
    h.finish()
}

/// Thread `t`'s events: the reference workload, all for one org, spread round-robin over
/// `MONTHS` so every month's writer is contended by every thread.
fn events_of(t: u64, n: u64) -> impl Iterator<Item = Event> {
    let start = ts("2026-01-01");
    let month_starts: Vec<Timestamp> = MONTHS.iter().map(|m| ts(&format!("{m}-01"))).collect();
    Workload::new(WorkloadConfig {
        events: n,
        orgs: 1,
        days: 27,
        seed: 1000 + t,
        start,
        out_of_order: 0.01,
    })
    .enumerate()
    .map(move |(i, mut e)| {
        e.org_id = ORG.into();
        let within = (e.occurred_at.0 - start.0).max(0);
        let m = (i + t as usize) % month_starts.len();
        e.occurred_at = Timestamp(month_starts[m].0 + within);
        e
    })
}

/// What a thread was told: (month, seq) → (hash, fingerprint of the event it sent).
type Told = Vec<(Month, u64, Hash, u64)>;

fn run(threads: u64, per_thread: u64, durability: Durability, batch: usize, max_open: usize) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_for(&[ORG]);
    let opts = || {
        Options::new(keys.clone())
            .durability(durability)
            .personal_data(["/after/email"])
            .max_open_writers(max_open)
    };
    let log = Arc::new(Log::open(dir.path(), opts()).unwrap());
    let barrier = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut told: Told = Vec::with_capacity(per_thread as usize);
                let mut pending: Vec<Event> = Vec::with_capacity(batch);
                barrier.wait();
                let send = |events: &mut Vec<Event>, told: &mut Told| {
                    let receipts = if events.len() == 1 {
                        vec![log.append(&events[0]).unwrap()]
                    } else {
                        log.append_batch(events).unwrap()
                    };
                    assert_eq!(receipts.len(), events.len());
                    for (e, r) in events.iter().zip(receipts) {
                        assert_eq!(r.org_id, ORG);
                        assert_eq!(Some(r.month), e.occurred_at.month());
                        told.push((r.month, r.seq, r.hash, fingerprint(e)));
                    }
                    events.clear();
                };
                for e in events_of(t, per_thread) {
                    pending.push(e);
                    if pending.len() >= batch {
                        send(&mut pending, &mut told);
                    }
                }
                if !pending.is_empty() {
                    send(&mut pending, &mut told);
                }
                told
            })
        })
        .collect();
    let mut told: HashMap<(Month, u64), (Hash, u64)> = HashMap::new();
    let mut total = 0u64;
    for h in handles {
        for (m, seq, hash, fp) in h.join().unwrap() {
            total += 1;
            assert!(
                told.insert((m, seq), (hash, fp)).is_none(),
                "two receipts for {m} seq {seq}"
            );
        }
    }
    assert_eq!(total, threads * per_thread);
    // Appends close writers only beyond twice the limit (and skip it while another thread is
    // closing); `sync`, with no appender left, must bring the count to the limit.
    log.sync().unwrap();
    assert!(
        log.open_writers() <= max_open,
        "{} writers open, limit {max_open}",
        log.open_writers()
    );
    Arc::into_inner(log).unwrap().close().unwrap();

    let reopened = Log::open(dir.path(), opts()).unwrap();
    assert!(
        reopened.recovery_report().is_empty(),
        "{:?}",
        reopened.recovery_report()
    );
    drop(reopened);

    // Stream the scan (holding 400k decoded events would cost over a gigabyte).
    let log = Log::open_read_only(dir.path(), opts()).unwrap();
    let mut next_seq: BTreeMap<Month, u64> = BTreeMap::new();
    for item in log.scan(&org(ORG)).unwrap() {
        let v = item.unwrap_or_else(|e| panic!("scan reported {e}"));
        let n = next_seq.entry(v.month).or_insert(0);
        assert_eq!(v.seq, *n, "month {} is not contiguous", v.month);
        *n += 1;
        let (hash, fp) = told
            .get(&(v.month, v.seq))
            .unwrap_or_else(|| panic!("record {} seq {} has no receipt", v.month, v.seq));
        assert_eq!(&v.hash, hash, "{} seq {}", v.month, v.seq);
        assert_eq!(
            fingerprint(&v.event),
            *fp,
            "content of {} seq {}",
            v.month,
            v.seq
        );
        assert_eq!(v.part, 0);
    }
    let mut per_month: BTreeMap<Month, u64> = BTreeMap::new();
    for (m, _) in told.keys() {
        *per_month.entry(*m).or_default() += 1;
    }
    assert_eq!(next_seq, per_month, "records on disk per month vs receipts");
    assert_eq!(next_seq.len(), MONTHS.len());
    if total <= 10_000 {
        // Full verification (indexes and links too) of the smaller runs.
        assert_verifies(dir.path(), &*keys);
    }
}

#[test]
fn eight_threads_50k_appends_each_buffered() {
    run(8, 50_000, Durability::Never, 1, 256);
}

#[test]
fn four_threads_durable_appends_and_batches() {
    // Group commit under `Always`: single appends and small batches interleaved.
    run(2, 300, Durability::Always, 1, 256);
    run(4, 400, Durability::Always, 7, 256);
}

/// With one writer allowed open (appends close writers beyond two), appends to the third
/// and fourth month keep closing writers (buffer written, fsynced, index written) and
/// reopening segments from disk while other threads append to them, and the flusher closes
/// more in the background: no seq may be reused or skipped, no buffered record lost, and
/// every index and link must still verify.
#[test]
fn writers_closed_and_reopened_under_contention() {
    run(4, 2_000, Durability::Never, 1, 1);
    run(4, 600, Durability::Always, 3, 1);
    run(
        3,
        1_000,
        Durability::Interval(std::time::Duration::from_millis(5)),
        1,
        2,
    );
}
