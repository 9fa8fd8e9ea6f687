#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Query speed of auditlog against SQLite holding the same events, in one run.
//!
//! Data: the reference workload (`auditlog::workload`, seed 1, 1 % of events up to an hour
//! out of order), one org, at 5M events per 90 days (~55,600 a day). Logs are built once
//! (Durability::Never, `append_batch`) and cached under `target/query-bench/`. Which logs
//! depends on the profile (`common/profile.rs`):
//! - long (`AUDITLOG_BENCH=long`): `log-5m` (5M events, 90 days: the main log, plus
//!   `sqlite.db` with the same events), `log-1m` (1M, 18 days) and, only when
//!   `QUERY_BENCH_20M=1` is set or it was built before, `log-20m` (20M, 360 days). Building
//!   takes minutes (the workload generator runs at ~100k events/s); later runs reuse them.
//! - short (the default): `short-1m` (1M events, 18 days, plus SQLite: the main log) and
//!   `short-222k` (4 days), built in about a minute on the first run.
//!
//! Logs written by other code are not reused: the `READY` marker holds [`CACHE_VERSION`] and
//! the crate version, and a marker that differs rebuilds the log.
//!
//! SQLite: the issue #5 peer shared with the append and verify benches (`common/sqlite.rs`):
//! one table with a column per event field, the four indexes (org_id, occurred_at),
//! (resource_type, resource_id), (user_id, occurred_at), (action, occurred_at), WAL, a hash
//! chain and an HMAC-SHA256 computed by the application per row, loaded with `sql_commit` in
//! transactions of 1,000 rows (`synchronous=OFF`, as our logs are built under `Never`), then
//! `ANALYZE`. Queries are the SQL an application would write against it (`sql_select`,
//! ordered by `(occurred_at, id)` as ours by `(occurred_at, seq)`); their plans are printed
//! and must use the intended index. `verified` SQLite queries re-check each row they return
//! against the chain (the previous row's stored hash, one rowid lookup) and its HMAC; `plain`
//! ones read only each row's `occurred_at` and `id` (what the unverified cursor's consumer
//! reads of each match: its time and seq); `+event` also builds an `Event` (JSON parsed). Before timing,
//! both engines must return the same number of rows for each query, and every SQLite row
//! must pass its check.
//!
//! Benchmarks (one iteration = one whole query; throughput in events returned):
//! - `full/…`: every event of the org, oldest first. `cursor` = borrowed matches
//!   ([`auditlog::Cursor`]), `events` = a decoded `VerifiedEvent` per match (on the 1M log:
//!   it is ~4× slower per event and criterion needs 10 samples).
//! - `day/…`: one day (long: 2026-02-10 of 90; short: 2026-01-12 of 18; ~55,600 events);
//!   `cold` opens the log anew per iteration, so the month's index is read and its tag
//!   checked each time; `1 thread` runs the verified query with `Query::threads(1)`, on one
//!   core as SQLite's single connection does (the other `day` and `full` rows use the default
//!   helpers, one per core up to 4).
//! - `user/…`: `user-00107`, ~0.1 % of events.
//! - `flat/…`: one day (long: 2026-01-10; short: 2026-01-03) on every log, all written at the
//!   same daily rate.
//!
//! The last group prints a summary against the issue #4 targets and the issue #5 ratios. Run:
//! `cargo bench --bench query` (short profile, about 2 minutes on the 2-core dev machine once
//! the logs are cached) or `AUDITLOG_BENCH=long cargo bench --bench query` (about 7).

#[path = "common/profile.rs"]
mod profile;
#[path = "common/sqlite.rs"]
mod sqlite;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Keyring, Log, Options, OrgId, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::Connection;
use sqlite::{
    Row, SqlSync, sql_check_read, sql_commit, sql_create, sql_event, sql_mac, sql_open, sql_row,
    sql_select,
};

const ORG: &str = "org-000";
const PER_DAY: u64 = 5_000_000 / 90;
const USER: &str = "user-00107";
/// Rows per SQLite transaction while loading (the append bench's batch).
const SQL_BATCH: usize = 1_000;

/// The version of what this file writes under `target/query-bench/`, recorded in each log's
/// `READY` marker together with the crate version (`CARGO_PKG_VERSION`). A cached log whose
/// marker differs is deleted and rebuilt. **Bump it whenever the logs or databases built
/// here would differ**: the workload, `build`, the SQLite table or its loading
/// (`common/sqlite.rs`), or auditlog's on-disk format (`docs/FORMAT.md`) when the crate
/// version does not change with it. Without it, logs written by older code were reused
/// silently.
/// - 1: the marker before this constant (JSON-body SQLite table; format 1 + sections).
/// - 2: the SQLite peer is the issue #5 table of `common/sqlite.rs`.
/// - 3: block filters of hash scheme 2 (FORMAT.md §3.2).
/// - 4: user marks (FORMAT.md §3.3).
const CACHE_VERSION: u32 = 4;

fn root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/query-bench");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn org() -> OrgId {
    OrgId::new(ORG).unwrap()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn workload(events: u64) -> Workload {
    Workload::new(WorkloadConfig {
        events,
        orgs: 1,
        days: u32::try_from(events / PER_DAY).unwrap(),
        seed: 1,
        start: ts("2026-01-01"),
        out_of_order: 0.01,
    })
}

/// A built log: its directory and keys.
struct Fixture {
    dir: PathBuf,
    keys: Arc<Keyring>,
    events: u64,
}

impl Fixture {
    fn open(&self) -> Log {
        Log::open_read_only(self.dir.join("log"), Options::new(self.keys.clone())).unwrap()
    }
}

/// Builds (or reuses) a log of `events` events; with `sqlite`, a SQLite database of the same
/// events beside it.
fn fixture(name: &str, events: u64, sqlite: bool) -> Fixture {
    let dir = root().join(name);
    let ready = dir.join("READY");
    let tag = format!(
        "query-bench cache v{CACHE_VERSION}, auditlog {}: {events} events, {PER_DAY}/day, seed 1, sqlite {sqlite}",
        env!("CARGO_PKG_VERSION")
    );
    if std::fs::read_to_string(&ready).ok().as_deref() != Some(tag.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        eprintln!("building {name}: {tag} (cached for later runs)");
        build(&dir, events, sqlite);
        std::fs::write(&ready, &tag).unwrap();
        eprintln!("built {name} in {:.0}s", t.elapsed().as_secs_f64());
    }
    Fixture {
        keys: Arc::new(Keyring::open(dir.join("keys.json")).unwrap()),
        dir,
        events,
    }
}

fn build(dir: &Path, events: u64, sqlite: bool) {
    let keys = Arc::new(Keyring::open_or_create(dir.join("keys.json")).unwrap());
    keys.rotate(&org()).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(16);
    let generator = std::thread::spawn(move || {
        let mut w = workload(events);
        loop {
            let chunk: Vec<Event> = w.by_ref().take(2000).collect();
            if chunk.is_empty() {
                break;
            }
            tx.send(chunk).unwrap();
        }
    });
    let log = Log::open(
        dir.join("log"),
        Options::new(keys).durability(Durability::Never),
    )
    .unwrap();
    let db_path = dir.join("sqlite.db");
    let mut db = sqlite.then(|| {
        sql_create(&db_path);
        sql_open(&db_path, SqlSync::Off)
    });
    let mac = sql_mac();
    let mut n = 0u64;
    for chunk in rx {
        log.append_batch(&chunk).unwrap();
        if let Some(c) = &mut db {
            for part in chunk.chunks(SQL_BATCH) {
                let rows: Vec<Row> = part.iter().map(sql_row).collect();
                sql_commit(c, &rows, &mac);
            }
        }
        n += chunk.len() as u64;
        if n.is_multiple_of(1_000_000) {
            eprintln!("  {n} events");
        }
    }
    generator.join().unwrap();
    log.close().unwrap();
    if let Some(c) = db {
        // Statistics for the planner (what `PRAGMA optimize` would gather), then the WAL
        // folded into the database, so its size on disk is the table plus its indexes.
        c.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
}

fn main_log() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    let l = profile::query().main;
    F.get_or_init(|| fixture(l.dir, l.events, true))
}

fn small_log() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    let l = profile::query().small;
    F.get_or_init(|| fixture(l.dir, l.events, false))
}

fn big_log() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let wanted = std::env::var("QUERY_BENCH_20M").is_ok_and(|v| v == "1");
        let Some(l) = profile::query().big else {
            if wanted {
                eprintln!(
                    "QUERY_BENCH_20M=1 is ignored by the short profile (set AUDITLOG_BENCH=long)"
                );
            }
            return None;
        };
        let built = root().join(l.dir).join("READY").exists();
        (wanted || built).then(|| fixture(l.dir, l.events, false))
    })
    .as_ref()
}

/// Samples per benchmark of the group being run (set by [`group`]): [`timed`] keeps that
/// many of its last `iter_custom` calls, the measured ones (the calls before them were
/// criterion's warm-up).
static GROUP_SAMPLES: AtomicUsize = AtomicUsize::new(10);

/// A criterion group with the profile's sampling; its name carries the profile's suffix.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    t: profile::Timing,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    GROUP_SAMPLES.store(t.samples, Ordering::Relaxed);
    let mut g = c.benchmark_group(format!("{name}{}", profile::query().group_suffix));
    g.sample_size(t.samples)
        .warm_up_time(t.warm_up)
        .measurement_time(t.measure);
    g
}

// ---------------------------------------------------------------------------------------
// Samples: (events returned, mean time per iteration) per `iter_custom` call, for the summary.
// ---------------------------------------------------------------------------------------

type Samples = Mutex<BTreeMap<String, Vec<(u64, Duration)>>>;

fn samples() -> &'static Samples {
    static S: OnceLock<Samples> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn record(name: &str, n: u64, d: Duration) {
    samples()
        .lock()
        .unwrap()
        .entry(name.into())
        .or_default()
        .push((n, d));
}

/// The 1-minute load average (`/proc/loadavg`) when each benchmark finished, for the summary.
fn loads() -> &'static Mutex<BTreeMap<String, String>> {
    static L: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// Median over the measured samples of the seconds per iteration (each sample's mean, as
/// criterion reports it), and the events per iteration. With an even number of samples the
/// median is the mean of the middle two.
fn median(name: &str) -> Option<(f64, u64)> {
    let s = samples().lock().unwrap();
    let v = s.get(name)?;
    let mut secs: Vec<f64> = v.iter().map(|(_, d)| d.as_secs_f64()).collect();
    secs.sort_by(f64::total_cmp);
    let n = v.last()?.0;
    let m = secs.len() / 2;
    let med = if secs.len() % 2 == 1 {
        secs[m]
    } else {
        (secs[m - 1] + secs[m]) / 2.0
    };
    Some((med, n))
}

/// Runs `f` once per iteration, timing it; records, per `iter_custom` call (one criterion
/// sample), what the last iteration returned and the mean time per iteration. Only the
/// group's last [`GROUP_SAMPLES`] calls are kept: those are criterion's samples.
fn timed(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    events: u64,
    mut f: impl FnMut() -> u64,
) {
    c.throughput(Throughput::Elements(events));
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut n = 0;
            for _ in 0..iters {
                let t = Instant::now();
                n = f();
                total += t.elapsed();
            }
            record(name, n, total.div_f64(iters.max(1) as f64));
            total
        })
    });
    if let Some(v) = samples().lock().unwrap().get_mut(name) {
        let keep = GROUP_SAMPLES.load(Ordering::Relaxed);
        v.drain(..v.len().saturating_sub(keep));
    }
    loads().lock().unwrap().insert(name.into(), load1());
}

// ---------------------------------------------------------------------------------------
// auditlog
// ---------------------------------------------------------------------------------------

/// Peak bytes held by waiting matches, over every query run.
fn peak() -> &'static Mutex<u64> {
    static P: OnceLock<Mutex<u64>> = OnceLock::new();
    P.get_or_init(Default::default)
}

fn note_peak(s: &auditlog::QueryStats) {
    let mut p = peak().lock().unwrap();
    *p = (*p).max(s.peak_waiting_bytes);
}

/// Counts matches through the cursor, touching each one's seq and time.
fn count_cursor(q: auditlog::Query<'_>) -> u64 {
    let mut c = q.cursor().unwrap();
    let mut n = 0u64;
    let mut last = (Timestamp(i64::MIN), 0u64);
    while let Some(r) = c.next_ref() {
        let r = r.unwrap();
        let k = (r.occurred_at(), r.seq());
        debug_assert!(k > last);
        last = k;
        n += 1;
    }
    note_peak(c.stats());
    std::hint::black_box(last);
    n
}

/// Counts matches decoded into `VerifiedEvent`s.
fn count_events(q: auditlog::Query<'_>) -> u64 {
    let mut m = q.run().unwrap();
    let mut n = 0u64;
    for e in m.by_ref() {
        std::hint::black_box(e.unwrap());
        n += 1;
    }
    note_peak(m.stats());
    n
}

fn ours(c: &mut Criterion) {
    let p = profile::query();
    let big = main_log();
    let small = small_log();
    let log = big.open();
    let log1 = small.open();
    let o = org();
    let (day_from, day_to) = (ts(p.day), Timestamp(ts(p.day).0 + 86_400_000_000));
    let day_n = count_cursor(log.query(&o).since(day_from).until(day_to));
    let user_n = count_cursor(log.query(&o).user(USER));
    let s = p.small.label;

    let mut g = group(c, "query", p.timing);
    timed(&mut g, "full/verified/cursor", big.events, || {
        count_cursor(log.query(&o))
    });
    timed(&mut g, "full/unverified/cursor", big.events, || {
        count_cursor(log.query(&o).unverified())
    });
    timed(
        &mut g,
        &format!("full/verified/cursor/1 thread ({s} log)"),
        small.events,
        || count_cursor(log1.query(&o).threads(1)),
    );
    timed(
        &mut g,
        &format!("full/unverified/cursor/1 thread ({s} log)"),
        small.events,
        || count_cursor(log1.query(&o).threads(1).unverified()),
    );
    timed(
        &mut g,
        &format!("full/verified/events ({s} log)"),
        small.events,
        || count_events(log1.query(&o)),
    );
    timed(
        &mut g,
        &format!("full/unverified/events ({s} log)"),
        small.events,
        || count_events(log1.query(&o).unverified()),
    );
    timed(&mut g, "day/verified/cursor", day_n, || {
        count_cursor(log.query(&o).since(day_from).until(day_to))
    });
    // The same on one thread (no helpers): SQLite's query runs on one connection, one core.
    timed(&mut g, "day/verified/cursor/1 thread", day_n, || {
        count_cursor(log.query(&o).since(day_from).until(day_to).threads(1))
    });
    timed(&mut g, "day/verified/events", day_n, || {
        count_events(log.query(&o).since(day_from).until(day_to))
    });
    timed(&mut g, "day/unverified/cursor", day_n, || {
        count_cursor(log.query(&o).since(day_from).until(day_to).unverified())
    });
    timed(&mut g, "day/verified/cursor/cold", day_n, || {
        let fresh = big.open();
        count_cursor(fresh.query(&o).since(day_from).until(day_to))
    });
    timed(&mut g, "user/verified/cursor", user_n, || {
        count_cursor(log.query(&o).user(USER))
    });
    timed(&mut g, "user/verified/events", user_n, || {
        count_events(log.query(&o).user(USER))
    });
    g.finish();

    let mut g = group(c, "query-flat", p.flat_timing);
    let (f_from, f_to) = (ts(p.flat_day), Timestamp(ts(p.flat_day).0 + 86_400_000_000));
    let mut logs = vec![(p.small.label, small), (p.main.label, big)];
    if let (Some(b), Some(l)) = (big_log(), p.big) {
        logs.push((l.label, b));
    }
    for (label, fx) in logs {
        let l = fx.open();
        let n = count_cursor(l.query(&o).since(f_from).until(f_to));
        timed(
            &mut g,
            &format!("flat/day/verified/cursor/{label}"),
            n,
            || count_cursor(l.query(&o).since(f_from).until(f_to)),
        );
        timed(
            &mut g,
            &format!("flat/day/verified/cursor/cold/{label}"),
            n,
            || {
                let fresh = fx.open();
                count_cursor(fresh.query(&o).since(f_from).until(f_to))
            },
        );
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// SQLite, same events
// ---------------------------------------------------------------------------------------

/// How a SQLite query's rows are consumed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Only `occurred_at` and `id` read, as `count_cursor` reads only each match's time and
    /// seq from the unverified cursor.
    Plain,
    /// Each row re-checked against the chain and its HMAC (`sql_check_read`).
    Verified,
    /// Checked, then built into an `Event` (`sql_event`).
    VerifiedEvent,
}

/// Runs one query (built by [`sql_select`] with `checked` = `read != Plain`) and consumes its
/// rows; returns how many. Panics on a row that fails its check.
fn sqlite_rows(c: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql], read: Read) -> u64 {
    let mut st = c.prepare_cached(sql).unwrap();
    let mut rows = st.query(args).unwrap();
    let mac = sql_mac();
    let (mut bytes, mut ts) = (Vec::with_capacity(4096), String::with_capacity(24));
    let mut n = 0u64;
    let mut last = (i64::MIN, 0i64);
    while let Some(r) = rows.next().unwrap() {
        let k = (r.get_unwrap::<_, i64>(2), r.get_unwrap::<_, i64>(0));
        debug_assert!(k > last);
        last = k;
        match read {
            // Only `occurred_at` and `id`, read above: what `count_cursor` reads of each
            // match (its time and seq) on the unverified cursor it pairs with.
            Read::Plain => {}
            Read::Verified | Read::VerifiedEvent => {
                assert!(
                    sql_check_read(r, &mac, &mut bytes, &mut ts),
                    "SQLite row {} fails its chain/HMAC check",
                    k.1
                );
                if read == Read::VerifiedEvent {
                    std::hint::black_box(sql_event(r));
                }
            }
        }
        n += 1;
    }
    std::hint::black_box(last);
    n
}

/// `EXPLAIN QUERY PLAN` of `sql`, one line per step.
fn plan(c: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> String {
    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = st
        .query_map(args, |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    rows.join("; ")
}

fn sqlite(c: &mut Criterion) {
    let fx = main_log();
    // A reader as an application opens one, with the writers' 256 MiB page cache (SQLite's
    // default is 2 MiB), read-only by pragma (the WAL files may need creating), no mmap.
    let db = Connection::open(fx.dir.join("sqlite.db")).unwrap();
    db.pragma_update(None, "cache_size", sqlite::SQL_CACHE_SIZE)
        .unwrap();
    db.execute_batch("PRAGMA query_only=1; PRAGMA mmap_size=0;")
        .unwrap();
    let p = profile::query();
    let (from, to) = (ts(p.day).0, ts(p.day).0 + 86_400_000_000);
    // The SQL a team would write against the table, each served by one of its indexes.
    const ALL: &str = "e.org_id = ?1";
    const RANGE: &str = "e.org_id = ?1 AND e.occurred_at >= ?2 AND e.occurred_at < ?3";
    const USER_Q: &str = "e.org_id = ?1 AND e.user_id = ?2";
    let q = |filter: &str, read: Read| sql_select(filter, read != Read::Plain);
    let all_args: [&dyn rusqlite::ToSql; 1] = [&ORG];
    let range_args: [&dyn rusqlite::ToSql; 3] = [&ORG, &from, &to];
    let user_args: [&dyn rusqlite::ToSql; 2] = [&ORG, &USER];

    // The plans: the range and the user query must run on their indexes, without a sort.
    for (name, filter, args, index) in [
        ("full", ALL, &all_args[..], None),
        ("day", RANGE, &range_args[..], Some("events_org_time")),
        ("user", USER_Q, &user_args[..], Some("events_user_time")),
    ] {
        for read in [Read::Plain, Read::Verified] {
            let pl = plan(&db, &q(filter, read), args);
            eprintln!("sqlite plan, {name}: {pl}");
            if let Some(ix) = index {
                assert!(pl.contains(ix), "{name}: expected {ix}: {pl}");
                assert!(!pl.contains("TEMP B-TREE"), "{name}: sorts: {pl}");
            }
        }
    }

    // Both engines must return the same rows, and every SQLite row must pass its check
    // (`sqlite_rows` panics otherwise), before anything is timed.
    let log = fx.open();
    let o = org();
    let ours_n = [
        count_cursor(log.query(&o)),
        count_cursor(log.query(&o).since(Timestamp(from)).until(Timestamp(to))),
        count_cursor(log.query(&o).user(USER)),
    ];
    drop(log);
    let mut theirs_n = [0u64; 3];
    for (i, (filter, args)) in [
        (ALL, &all_args[..]),
        (RANGE, &range_args[..]),
        (USER_Q, &user_args[..]),
    ]
    .into_iter()
    .enumerate()
    {
        let plain = sqlite_rows(&db, &q(filter, Read::Plain), args, Read::Plain);
        let checked = sqlite_rows(&db, &q(filter, Read::Verified), args, Read::Verified);
        assert_eq!(plain, checked);
        theirs_n[i] = plain;
    }
    assert_eq!(
        ours_n, theirs_n,
        "rows returned (full, day, user): auditlog {ours_n:?}, SQLite {theirs_n:?}"
    );
    assert_eq!(ours_n[0], fx.events);
    eprintln!("same rows on both sides (full, day, user): {ours_n:?}");
    let [_, day_n, user_n] = theirs_n;

    let mut g = group(c, "sqlite", p.timing);
    for (name, n, filter, args, read) in [
        (
            "sqlite/full/verified",
            fx.events,
            ALL,
            &all_args[..],
            Read::Verified,
        ),
        (
            "sqlite/full/plain",
            fx.events,
            ALL,
            &all_args[..],
            Read::Plain,
        ),
        (
            "sqlite/day/verified",
            day_n,
            RANGE,
            &range_args[..],
            Read::Verified,
        ),
        (
            "sqlite/day/plain",
            day_n,
            RANGE,
            &range_args[..],
            Read::Plain,
        ),
        (
            "sqlite/day/verified+event",
            day_n,
            RANGE,
            &range_args[..],
            Read::VerifiedEvent,
        ),
        (
            "sqlite/user/verified",
            user_n,
            USER_Q,
            &user_args[..],
            Read::Verified,
        ),
        (
            "sqlite/user/verified+event",
            user_n,
            USER_Q,
            &user_args[..],
            Read::VerifiedEvent,
        ),
    ] {
        let sql = q(filter, read);
        timed(&mut g, name, n, || sqlite_rows(&db, &sql, args, read));
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_bytes(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn summary(_c: &mut Criterion) {
    let line = |name: &str| -> Option<(f64, u64)> { median(name) };
    let p = profile::query();
    println!(
        "\n=== query summary (profile {}: main log {} events, small {}; medians of {} samples; 2-core machine) ===",
        profile::Profile::get().name(),
        p.main.label,
        p.small.label,
        p.timing.samples
    );
    println!(
        "load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<44} {:>10} {:>12} {:>14} {:>6}",
        "benchmark", "events", "ms", "events/s", "load¹"
    );
    let names: Vec<String> = samples().lock().unwrap().keys().cloned().collect();
    for n in &names {
        if let Some((s, e)) = line(n) {
            let l = loads().lock().unwrap().get(n).cloned().unwrap_or_default();
            println!(
                "{n:<44} {e:>10} {:>12.1} {:>14.0} {l:>6}",
                s * 1e3,
                e as f64 / s
            );
        }
    }
    println!("¹ 1-minute load average (/proc/loadavg) when the benchmark finished");
    let rate = |n: &str| line(n).map(|(s, e)| e as f64 / s).unwrap_or(f64::NAN);
    let ms = |n: &str| line(n).map(|(s, _)| s * 1e3).unwrap_or(f64::NAN);
    println!("\n--- issue #4 targets ---");
    let v = rate("full/verified/cursor");
    println!(
        "verified full scan      {v:>12.0} events/s  (target ≥ 1,500,000: {})",
        if v >= 1.5e6 { "met" } else { "MISSED" }
    );
    let u = rate("full/unverified/cursor");
    println!(
        "unverified full scan    {u:>12.0} events/s  (target ≥ 5,000,000: {})",
        if u >= 5e6 { "met" } else { "MISSED" }
    );
    let speedup = ms("full/verified/cursor") / ms("user/verified/cursor");
    println!(
        "selective user query    {:>12.1} ms, {speedup:.0}× faster than the full verified scan (target ≥ 20×: {})",
        ms("user/verified/cursor"),
        if speedup >= 20.0 { "met" } else { "MISSED" }
    );
    let d = ms("day/verified/cursor");
    println!(
        "1-day range (warm)      {d:>12.1} ms  (target < 50 ms: {})",
        if d < 50.0 { "met" } else { "MISSED" }
    );
    println!(
        "1-day range (cold idx)  {:>12.1} ms",
        ms("day/verified/cursor/cold")
    );
    println!(
        "1-day as VerifiedEvent  {:>12.1} ms",
        ms("day/verified/events")
    );
    println!(
        "\n--- against SQLite (issue #5 table, same events, same machine, same run; ratio = SQLite ms ÷ auditlog ms) ---"
    );
    println!(
        "(auditlog's rows use the default query threads, one per core up to 4; SQLite runs on one connection, one core; `1 thread` is auditlog on one core)"
    );
    for (ours, theirs) in [
        ("full/verified/cursor", "sqlite/full/verified"),
        ("full/unverified/cursor", "sqlite/full/plain"),
        ("day/verified/cursor", "sqlite/day/verified"),
        ("day/verified/cursor/1 thread", "sqlite/day/verified"),
        ("day/unverified/cursor", "sqlite/day/plain"),
        ("day/verified/events", "sqlite/day/verified+event"),
        ("user/verified/cursor", "sqlite/user/verified"),
        ("user/verified/events", "sqlite/user/verified+event"),
    ] {
        println!(
            "{ours:<29} {:>9.1} ms   {theirs:<28} {:>9.1} ms   ratio {:.2}×",
            ms(ours),
            ms(theirs),
            ms(theirs) / ms(ours)
        );
    }
    for (what, ours, theirs) in [
        (
            "1-day query (auditlog on every core)",
            "day/verified/cursor",
            "sqlite/day/verified",
        ),
        (
            "1-day query (both on one core)",
            "day/verified/cursor/1 thread",
            "sqlite/day/verified",
        ),
        (
            "selective user query",
            "user/verified/cursor",
            "sqlite/user/verified",
        ),
    ] {
        let r = ms(theirs) / ms(ours);
        println!(
            "issue #5: {what} {r:.2}× faster than SQLite's indexed query (target ≥ 3×: {})",
            if r >= 3.0 { "met" } else { "MISSED" }
        );
    }
    let fx = main_log();
    let log_bytes = dir_bytes(&fx.dir.join("log"));
    let db_bytes: u64 = ["sqlite.db", "sqlite.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(fx.dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!("\n--- sizes ({} events) ---", p.main.label);
    println!(
        "auditlog segments + indexes {:>8.1} MB ({:.0} B/event)",
        log_bytes as f64 / 1e6,
        log_bytes as f64 / fx.events as f64
    );
    println!(
        "sqlite table + 4 indexes    {:>8.1} MB ({:.0} B/event); auditlog ÷ SQLite = {:.3}",
        db_bytes as f64 / 1e6,
        db_bytes as f64 / fx.events as f64,
        log_bytes as f64 / db_bytes as f64
    );
    println!("\n--- memory ---");
    println!(
        "peak bytes held by waiting matches and their buffers, any query: {:.1} MB",
        *peak().lock().unwrap() as f64 / 1e6
    );
    println!(
        "peak RSS of this process (includes SQLite's 256 MiB cache): {:.0} MB",
        peak_rss_kib() as f64 / 1024.0
    );
}

criterion_group!(benches, ours, sqlite, summary);
criterion_main!(benches);
