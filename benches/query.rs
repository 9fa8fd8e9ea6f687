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
//! SQLite: one table, the indexed fields as columns, the event's JSON as text and an
//! application-computed HMAC-SHA256 of it, indexes on (org, ts), (org, user_id, ts),
//! (org, action, ts), (org, resource_type, resource_id, ts). "Verified" SQLite queries
//! recompute and compare the HMAC of each row they return.
//!
//! Benchmarks (one iteration = one whole query; throughput in events returned):
//! - `full/…`: every event of the org, oldest first. `cursor` = borrowed matches
//!   ([`auditlog::Cursor`]), `events` = a decoded `VerifiedEvent` per match (on the 1M log:
//!   it is ~4× slower per event and criterion needs 10 samples).
//! - `day/…`: one day (long: 2026-02-10 of 90; short: 2026-01-12 of 18; ~55,600 events);
//!   `cold` opens the log anew per iteration, so the month's index is read and its tag
//!   checked each time.
//! - `user/…`: `user-00107`, ~0.1 % of events.
//! - `flat/…`: one day (long: 2026-01-10; short: 2026-01-03) on every log, all written at the
//!   same daily rate.
//!
//! The last group prints a summary against the issue #4 targets. Run:
//! `cargo bench --bench query` (short profile, about 2 minutes on the 2-core dev machine once
//! the logs are cached) or `AUDITLOG_BENCH=long cargo bench --bench query` (about 7).

#[path = "common/profile.rs"]
mod profile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Keyring, Log, Options, OrgId, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use rusqlite::{Connection, params};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const ORG: &str = "org-000";
const PER_DAY: u64 = 5_000_000 / 90;
const USER: &str = "user-00107";
const SQLITE_KEY: &[u8; 32] = b"bench-sqlite-hmac-key-0123456789";

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
    let tag = format!("{events} events, {PER_DAY}/day, seed 1, sqlite {sqlite}, format 1+sections");
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
    let mut db = sqlite.then(|| {
        let c = Connection::open(dir.join("sqlite.db")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
             CREATE TABLE events(id INTEGER PRIMARY KEY, org TEXT NOT NULL, ts INTEGER NOT NULL,
               user_id TEXT, action TEXT NOT NULL, resource_type TEXT NOT NULL,
               resource_id TEXT NOT NULL, trace_id TEXT, body TEXT NOT NULL, mac BLOB NOT NULL);",
        )
        .unwrap();
        c
    });
    let mut n = 0u64;
    for chunk in rx {
        log.append_batch(&chunk).unwrap();
        if let Some(c) = &mut db {
            let tx = c.transaction().unwrap();
            {
                let mut st = tx
                    .prepare_cached(
                        "INSERT INTO events(org, ts, user_id, action, resource_type, resource_id,
                         trace_id, body, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .unwrap();
                for e in &chunk {
                    let body = serde_json::to_string(e).unwrap();
                    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(SQLITE_KEY).unwrap();
                    mac.update(body.as_bytes());
                    let mac = mac.finalize().into_bytes().to_vec();
                    st.execute(params![
                        e.org_id,
                        e.occurred_at.0,
                        e.user_id,
                        e.action,
                        e.resource_type,
                        e.resource_id,
                        e.trace_id,
                        body,
                        mac
                    ])
                    .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        n += chunk.len() as u64;
        if n.is_multiple_of(1_000_000) {
            eprintln!("  {n} events");
        }
    }
    generator.join().unwrap();
    log.close().unwrap();
    if let Some(c) = db {
        c.execute_batch(
            "CREATE INDEX ev_time ON events(org, ts);
             CREATE INDEX ev_user ON events(org, user_id, ts);
             CREATE INDEX ev_action ON events(org, action, ts);
             CREATE INDEX ev_resource ON events(org, resource_type, resource_id, ts);
             ANALYZE;",
        )
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

/// A criterion group with the profile's sampling; its name carries the profile's suffix.
fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    t: profile::Timing,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(format!("{name}{}", profile::query().group_suffix));
    g.sample_size(t.samples)
        .warm_up_time(t.warm_up)
        .measurement_time(t.measure);
    g
}

// ---------------------------------------------------------------------------------------
// Samples: (events returned, elapsed) per iteration, for the summary.
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

/// Median seconds per iteration and events per iteration, over the last 10 samples.
fn median(name: &str) -> Option<(f64, u64)> {
    let s = samples().lock().unwrap();
    let v = s.get(name)?;
    let tail = &v[v.len().saturating_sub(10)..];
    let mut secs: Vec<f64> = tail.iter().map(|(_, d)| d.as_secs_f64()).collect();
    secs.sort_by(f64::total_cmp);
    let n = tail.last()?.0;
    Some((secs[secs.len() / 2], n))
}

/// Runs `f` once per iteration, timing it and recording what it returned.
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
            for _ in 0..iters {
                let t = Instant::now();
                let n = f();
                let d = t.elapsed();
                record(name, n, d);
                total += d;
            }
            total
        })
    });
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

fn sqlite_rows(
    c: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
    verify: bool,
    json: bool,
) -> u64 {
    let mut st = c.prepare_cached(sql).unwrap();
    let mut rows = st.query(args).unwrap();
    let mut n = 0u64;
    let base = <HmacSha256 as KeyInit>::new_from_slice(SQLITE_KEY).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let ts: i64 = r.get_unwrap(0);
        let body = r.get_ref_unwrap(1).as_str().unwrap();
        if verify {
            let mac = r.get_ref_unwrap(2).as_blob().unwrap();
            let mut m = base.clone();
            m.update(body.as_bytes());
            assert!(m.verify_slice(mac).is_ok());
        }
        if json {
            let e: Event = serde_json::from_str(body).unwrap();
            std::hint::black_box(e);
        }
        std::hint::black_box((ts, body.len()));
        n += 1;
    }
    n
}

fn sqlite(c: &mut Criterion) {
    let fx = main_log();
    let db = Connection::open_with_flags(
        fx.dir.join("sqlite.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.execute_batch("PRAGMA cache_size=-262144; PRAGMA mmap_size=0;")
        .unwrap();
    let p = profile::query();
    let (from, to) = (ts(p.day).0, ts(p.day).0 + 86_400_000_000);
    const ALL: &str = "SELECT ts, body, mac FROM events WHERE org = ?1 ORDER BY ts, id";
    const RANGE: &str =
        "SELECT ts, body, mac FROM events WHERE org = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts, id";
    const USER_Q: &str =
        "SELECT ts, body, mac FROM events WHERE org = ?1 AND user_id = ?2 ORDER BY ts, id";
    let day_n = sqlite_rows(&db, RANGE, &[&ORG, &from, &to], true, false);
    let user_n = sqlite_rows(&db, USER_Q, &[&ORG, &USER], true, false);
    let mut g = group(c, "sqlite", p.timing);
    timed(&mut g, "sqlite/full/hmac", fx.events, || {
        sqlite_rows(&db, ALL, &[&ORG], true, false)
    });
    timed(&mut g, "sqlite/full/plain", fx.events, || {
        sqlite_rows(&db, ALL, &[&ORG], false, false)
    });
    timed(&mut g, "sqlite/day/hmac", day_n, || {
        sqlite_rows(&db, RANGE, &[&ORG, &from, &to], true, false)
    });
    timed(&mut g, "sqlite/day/hmac+json", day_n, || {
        sqlite_rows(&db, RANGE, &[&ORG, &from, &to], true, true)
    });
    timed(&mut g, "sqlite/user/hmac", user_n, || {
        sqlite_rows(&db, USER_Q, &[&ORG, &USER], true, false)
    });
    timed(&mut g, "sqlite/user/hmac+json", user_n, || {
        sqlite_rows(&db, USER_Q, &[&ORG, &USER], true, true)
    });
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
        "{:<44} {:>10} {:>12} {:>14}",
        "benchmark", "events", "ms", "events/s"
    );
    let names: Vec<String> = samples().lock().unwrap().keys().cloned().collect();
    for n in &names {
        if let Some((s, e)) = line(n) {
            println!("{n:<44} {e:>10} {:>12.1} {:>14.0}", s * 1e3, e as f64 / s);
        }
    }
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
    println!("\n--- against SQLite (same events, same machine, same run) ---");
    for (ours, theirs) in [
        ("full/verified/cursor", "sqlite/full/hmac"),
        ("full/unverified/cursor", "sqlite/full/plain"),
        ("day/verified/cursor", "sqlite/day/hmac"),
        ("day/verified/events", "sqlite/day/hmac+json"),
        ("user/verified/cursor", "sqlite/user/hmac"),
        ("user/verified/events", "sqlite/user/hmac+json"),
    ] {
        println!(
            "{ours:<28} {:>9.1} ms   {theirs:<24} {:>9.1} ms   ratio {:.2}×",
            ms(ours),
            ms(theirs),
            ms(theirs) / ms(ours)
        );
    }
    let fx = main_log();
    let log_bytes = dir_bytes(&fx.dir.join("log"));
    let db_bytes = std::fs::metadata(fx.dir.join("sqlite.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("\n--- sizes ({} events) ---", p.main.label);
    println!(
        "auditlog segments + indexes {:>8.1} MB ({:.0} B/event)",
        log_bytes as f64 / 1e6,
        log_bytes as f64 / fx.events as f64
    );
    println!(
        "sqlite database             {:>8.1} MB ({:.0} B/event)",
        db_bytes as f64 / 1e6,
        db_bytes as f64 / fx.events as f64
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
