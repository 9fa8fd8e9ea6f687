//! A key provider that panics, wherever the log calls it: in the background flusher, in a
//! retirement run by the flusher or by an appender, in `close`, in the caller's `append`.
//! And panics of the log's own in a retirement or a flusher tick (`panic_point`). None may
//! leave a month unusable, stop the flusher or lose a record.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::sync::atomic::AtomicU8;
use std::time::Instant;

use super::*;
use crate::crypto::{Key, KeyError, KeyId, Keyring};
use crate::workload::{Workload, WorkloadConfig};

thread_local! {
    /// Where this thread panics on purpose (`close_writer`, `flush_tick`); `""`: nowhere.
    static PANIC_AT: Cell<&'static str> = const { Cell::new("") };
}

/// Panics, once, if this thread was told to panic at `point` (see `PANIC_AT`).
pub(super) fn panic_point(point: &str) {
    if PANIC_AT.with(|p| p.replace("") == point) {
        panic!("test panic at {point}");
    }
    PANIC_AT.with(|p| p.set(""));
}

/// Makes this thread panic the next time it reaches `point` (not after this is dropped).
struct PanicAt;

impl PanicAt {
    fn new(point: &'static str) -> PanicAt {
        PANIC_AT.with(|p| p.set(point));
        PanicAt
    }
}

impl Drop for PanicAt {
    fn drop(&mut self) {
        PANIC_AT.with(|p| p.set(""));
    }
}

const ORG: &str = "org-000";
const OTHER: &str = "org-001";

/// When [`PanickingKeys`] panics for org-000 (never for the other org).
const NEVER: u8 = 0;
const ALWAYS: u8 = 1;
/// Only when called on the background flusher's thread.
const IN_FLUSHER: u8 = 2;

/// Keys of org-000 and org-001 that panic for org-000 when told to.
struct PanickingKeys {
    inner: Keyring,
    mode: AtomicU8,
    panics: AtomicUsize,
}

impl PanickingKeys {
    fn new() -> Arc<PanickingKeys> {
        let inner = Keyring::in_memory();
        for org in [ORG, OTHER] {
            inner.rotate(&OrgId::new(org).unwrap()).unwrap();
        }
        Arc::new(PanickingKeys {
            inner,
            mode: AtomicU8::new(NEVER),
            panics: AtomicUsize::new(0),
        })
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn panics(&self) -> usize {
        self.panics.load(Ordering::SeqCst)
    }

    fn maybe_panic(&self, org: &OrgId) {
        let now = match self.mode.load(Ordering::SeqCst) {
            ALWAYS => true,
            IN_FLUSHER => std::thread::current().name() == Some("auditlog-flusher"),
            _ => false,
        };
        if now && org.as_str() == ORG {
            self.panics.fetch_add(1, Ordering::SeqCst);
            panic!("key provider panics for {org}");
        }
    }
}

impl KeyProvider for PanickingKeys {
    fn signing_key(&self, org: &OrgId) -> std::result::Result<(KeyId, Key), KeyError> {
        self.maybe_panic(org);
        self.inner.signing_key(org)
    }

    fn key(&self, org: &OrgId, id: KeyId) -> std::result::Result<Option<Key>, KeyError> {
        self.maybe_panic(org);
        self.inner.key(org, id)
    }
}

/// An event of `org` in `month` (day 1 plus `n` seconds).
fn event(org: &str, month: Month, n: i64) -> Event {
    let mut e = Workload::new(WorkloadConfig {
        events: 1,
        orgs: 1,
        seed: n as u64,
        ..WorkloadConfig::default()
    })
    .next()
    .unwrap();
    e.org_id = org.to_string();
    e.occurred_at = Timestamp(month.start().micros() + n * 1_000_000);
    e
}

fn month(m: u8) -> Month {
    Month::new(2026, m).unwrap()
}

/// Generous: these conditions hold within a tick or two of the flusher (one second each).
const BOUND: Duration = Duration::from_secs(30);

/// Waits until `cond` holds; fails the test if it does not within [`BOUND`].
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < BOUND, "not within {BOUND:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` on another thread and returns its result; fails the test if it does not
/// return within [`BOUND`] (an append waiting for a month that never leaves `closing`).
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what} did not return within {BOUND:?}"))
}

fn events_on_disk(dir: &Path, keys: Arc<dyn KeyProvider>) -> u64 {
    let log = Log::open(dir, Options::new(keys)).unwrap();
    let n = log.stats().unwrap().iter().map(|m| m.events).sum();
    for org in [ORG, OTHER] {
        let org = OrgId::new(org).unwrap();
        assert!(log.scan(&org).unwrap().all(|r| r.is_ok()), "{org} verifies");
    }
    log.close().unwrap();
    n
}

/// Finding 1, the flusher's retirement: with parking off, retiring March's writer asks for
/// the key to write its index. The provider panicked there, unwound out of the retirement
/// (and ended the flusher) with March still marked as being closed, so that the next
/// append to March waited for good. Now the close stands without its index (the data is
/// fsynced first; the index is rebuilt when the segment is next opened).
#[test]
fn a_provider_panic_in_the_flushers_retirement_strands_no_month() {
    let dir = tempfile::tempdir().unwrap();
    let keys = PanickingKeys::new();
    let opts = Options::new(keys.clone())
        .max_open_writers(1)
        .parked_bytes(0);
    let log = Arc::new(Log::open(dir.path(), opts).unwrap());
    // From the start, so that whichever tick retires March panics.
    keys.set(IN_FLUSHER);
    log.append(&event(ORG, month(3), 0)).unwrap();
    log.append(&event(ORG, month(4), 0)).unwrap();

    wait_until("the flusher retires March's writer", || {
        log.open_writers() == 1
    });
    assert!(keys.panics() > 0, "the retirement did not ask the provider");

    let l = Arc::clone(&log);
    let r = returns("an append to March", move || {
        l.append(&event(ORG, month(3), 1))
    });
    assert_eq!(r.unwrap().seq, 1);
    assert_eq!(log.append(&event(ORG, month(4), 1)).unwrap().seq, 1);
    keys.set(NEVER);
    Arc::into_inner(log).unwrap().close().unwrap();
    assert_eq!(events_on_disk(dir.path(), keys), 4);
}

/// Finding 1, an appender's retirement: an append of org-001 past twice the limit closes
/// org-000's idle writers on the appender's thread. The provider's panic for org-000 came
/// out of org-001's append (whose record was written), and org-000's January stayed
/// marked as being closed. Now the append succeeds and org-000 stays writable.
#[test]
fn a_provider_panic_in_an_appenders_retirement_strands_no_month() {
    let dir = tempfile::tempdir().unwrap();
    let keys = PanickingKeys::new();
    let opts = Options::new(keys.clone())
        .durability(Durability::Interval(Duration::from_secs(3600)))
        .max_open_writers(1)
        .parked_bytes(0);
    let log = Arc::new(Log::open(dir.path(), opts).unwrap());
    log.append(&event(ORG, month(1), 0)).unwrap();
    log.append(&event(ORG, month(2), 0)).unwrap();

    keys.set(ALWAYS);
    // The third writer: past twice the limit, this append retires org-000's two.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        log.append(&event(OTHER, month(1), 0))
    }));
    assert_eq!(
        r.expect("the provider's panic reached the appender")
            .unwrap()
            .seq,
        0
    );
    assert!(keys.panics() > 0, "the retirement did not ask the provider");
    assert_eq!(log.open_writers(), 1);
    keys.set(NEVER);

    let l = Arc::clone(&log);
    let r = returns("an append to January", move || {
        l.append(&event(ORG, month(1), 1))
    });
    assert_eq!(r.unwrap().seq, 1);
    Arc::into_inner(log).unwrap().close().unwrap();
    assert_eq!(events_on_disk(dir.path(), keys), 4);
}

/// Finding 2: under `Interval`, a provider panic in the flusher's index write ended the
/// flusher thread, and with it every background fsync, while appends went on returning
/// `Ok`. Now the flusher goes on: a record appended after the panics is fsynced by it, and
/// its index writes go on failing (the provider still panics there) without stopping it.
#[test]
fn a_provider_panic_in_the_flusher_does_not_stop_background_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let keys = PanickingKeys::new();
    let mut opts =
        Options::new(keys.clone()).durability(Durability::Interval(Duration::from_millis(10)));
    opts.index_flush_bytes = MIN_INDEX_FLUSH_BYTES;
    let log = Log::open(dir.path(), opts).unwrap();
    keys.set(IN_FLUSHER);
    let batch: Vec<Event> = (0..40).map(|n| event(ORG, month(1), n)).collect();
    log.append_batch(&batch).unwrap();
    wait_until("the flusher asks for the key", || keys.panics() > 0);

    let before = keys.panics();
    log.append(&event(ORG, month(1), 40)).unwrap();
    let org = log.inner.org(&OrgId::new(ORG).unwrap());
    let w = org.segs.lock().writers.get(&month(1)).cloned().unwrap();
    let end = w.snapshot().end;
    wait_until("the flusher fsyncs the last append", || {
        w.durable_len() >= end
    });
    wait_until("the flusher keeps trying the index", || {
        keys.panics() > before
    });
    drop(w);
    keys.set(NEVER);
    log.close().unwrap();
    assert_eq!(events_on_disk(dir.path(), keys), 41);
}

/// Finding 3: `close` under `Never` asked the provider for the key before it wrote and
/// fsynced a writer's buffer; the panic unwound out of `close` with the log already marked
/// closed, so `Drop` did nothing, and the buffered records of the months not yet settled
/// were lost. Now `close` returns the key error and every record is on disk.
#[test]
fn a_provider_panic_at_close_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let keys = PanickingKeys::new();
    let opts = Options::new(keys.clone()).durability(Durability::Never);
    let log = Log::open(dir.path(), opts).unwrap();
    for m in 1..=3 {
        log.append(&event(ORG, month(m), 0)).unwrap();
    }
    keys.set(ALWAYS);
    let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.close()));
    match closed.expect("the provider's panic came out of close") {
        Err(Error::Key {
            org,
            source: KeyError::Panicked(message),
        }) => {
            assert_eq!(org, ORG);
            assert!(message.contains("key provider panics"), "{message}");
        }
        other => panic!("expected the panic as a key error, got {other:?}"),
    }
    keys.set(NEVER);
    assert_eq!(events_on_disk(dir.path(), keys), 3);
}

/// A panic in the caller's own `append` or `append_batch` comes back as a key error that
/// wrote nothing (a refusal), and the log stays fully usable.
#[test]
fn a_provider_panic_in_append_is_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let keys = PanickingKeys::new();
    let log = Log::open(dir.path(), Options::new(keys.clone())).unwrap();
    log.append(&event(ORG, month(1), 0)).unwrap();
    keys.set(ALWAYS);
    for r in [
        log.append(&event(ORG, month(1), 1)).map(|_| ()),
        log.append(&event(ORG, month(2), 1)).map(|_| ()),
        log.append_batch(&[event(OTHER, month(2), 1), event(ORG, month(3), 1)])
            .map(|_| ()),
    ] {
        match r.as_ref().map_err(Error::unbatched) {
            Err(e @ Error::Key { .. }) => assert!(e.is_refusal()),
            other => panic!("expected a key error, got {other:?}"),
        }
    }
    keys.set(NEVER);
    assert_eq!(log.append(&event(ORG, month(1), 1)).unwrap().seq, 1);
    assert_eq!(
        log.segments(&OrgId::new(ORG).unwrap()).unwrap().len(),
        1,
        "a refused append created a segment"
    );
    assert!(!dir.path().join(OTHER).exists());
    log.close().unwrap();
    assert_eq!(events_on_disk(dir.path(), keys), 2);
}

/// A panic of the log's own inside a retirement (here on purpose, at the start of
/// `close_writer`) fails the close like an error: the month does not stay in `closing`,
/// its writer is poisoned (it may have been left half closed) and reports it to its
/// appenders, the other months go on, and a reopen recovers every record.
#[test]
fn a_panic_inside_a_retirement_poisons_the_writer_and_strands_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = PanickingKeys::new();
    let opts = Options::new(keys.clone())
        .durability(Durability::Interval(Duration::from_secs(3600)))
        .max_open_writers(1);
    let log = Log::open(dir.path(), opts).unwrap();
    log.append(&event(ORG, month(1), 0)).unwrap();
    log.append(&event(ORG, month(2), 0)).unwrap();
    {
        let _panics = PanicAt::new("close_writer");
        let _retiring = log.inner.retiring.lock();
        log.inner.retire_locked(1);
    }
    let org = log.inner.org(&OrgId::new(ORG).unwrap());
    assert!(
        org.segs.lock().closing.is_empty(),
        "a month left in `closing`"
    );
    // January's close panicked: its writer, poisoned, was let go of (its month keeps the
    // failure), which brought the count down to the limit; February's stays open.
    assert_eq!(log.open_writers(), 1);
    match log.append(&event(ORG, month(1), 1)) {
        Err(Error::WriterFailed { cause, .. }) => {
            assert!(cause.contains("writer retirement panicked"), "{cause}");
        }
        other => panic!("expected the poisoned writer's error, got {other:?}"),
    }
    assert_eq!(log.append(&event(ORG, month(2), 1)).unwrap().seq, 1);
    assert!(matches!(log.close(), Err(Error::WriterFailed { .. })));
    assert_eq!(events_on_disk(dir.path(), keys), 3);
}

/// A panic of the log's own inside a flusher tick (on purpose, at its start) does not end
/// the tick's caller, leaves `retiring` free, and `close` reports it.
#[test]
fn a_panic_inside_a_flusher_tick_is_contained_and_reported_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let keys = PanickingKeys::new();
    let opts =
        Options::new(keys.clone()).durability(Durability::Interval(Duration::from_secs(3600)));
    let log = Log::open(dir.path(), opts).unwrap();
    log.append(&event(ORG, month(1), 0)).unwrap();
    {
        let _panics = PanicAt::new("flush_tick");
        log.inner.flush_tick();
    }
    assert!(log.inner.retiring.try_lock().is_some());
    // The next tick runs as usual.
    log.inner.flush_tick();
    assert_eq!(log.append(&event(ORG, month(1), 1)).unwrap().seq, 1);
    match log.close() {
        Err(Error::Panicked { task, message }) => {
            assert_eq!(task, "background flusher");
            assert!(message.contains("test panic at flush_tick"), "{message}");
        }
        other => panic!("expected the tick's panic at close, got {other:?}"),
    }
    assert_eq!(events_on_disk(dir.path(), keys), 2);
}
