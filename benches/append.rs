#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Append throughput of auditlog against the physics of the disk and against SQLite, in one
//! run, on one filesystem (a temporary directory under `target/tmp`).
//!
//! Every benchmark counts one iteration as one event (or one fsync / one 1 MiB write for the
//! bounds). Multi-threaded benchmarks use `iter_custom`: the threads are spawned and wait on
//! a barrier, the clock runs from the barrier to the last join; a call runs at least one
//! event per thread (one batch per thread for batched ones) and scales the elapsed time back
//! to the iteration count criterion asked for.
//!
//! Each routine also records its raw samples; the last group (`summary`) prints the figures
//! as ratios to their physical bounds and to SQLite, and the issue #2 targets. See
//! `docs/BENCHMARKS.md`.
//!
//! Run: `cargo bench --bench append` (short profile, about 1.5 minutes on the 2-core dev
//! machine) or `AUDITLOG_BENCH=long cargo bench --bench append` (the recorded figures'
//! sampling, about 2.5 minutes); see `common/profile.rs`.

#[path = "common/bytes.rs"]
mod bytes;
#[path = "common/profile.rs"]
mod profile;
#[path = "common/sqlite.rs"]
mod sqlite;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, Event, Keyring, Log, Options, OrgId, Timestamp};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use sqlite::{Row, SqlSync, sql_commit, sql_create, sql_mac, sql_open, sql_row};

/// Distinct events generated once and cycled through by every benchmark.
const POOL: usize = 20_000;
/// Events cycled through by `never_1t_append_hot`: few enough that their fields stay cached.
const HOT_POOL: usize = 256;
/// Events per `append_batch` call and per SQLite transaction.
const BATCH: usize = 1_000;
/// The single-thread `Never` log is replaced by a fresh one after this many events, so the
/// run does not fill the disk.
const NEVER_REOPEN_EVENTS: u64 = 400_000;
/// Orgs of `never_1t_append_many_orgs`.
const MANY_ORGS: usize = 1_000;

// ---------------------------------------------------------------------------------------
// Fixture and sample recording
// ---------------------------------------------------------------------------------------

struct Fixture {
    /// The reference workload: 4 orgs (skewed), all in January 2026 (live traffic goes to
    /// the current month), ~670 B of JSON each on average.
    events: Vec<Event>,
    /// The same events, all of one org (one segment writer): group commit without
    /// the spread over writers.
    one_org: Vec<Event>,
    /// The same events spread over `MANY_ORGS` orgs: more (org, month) pairs in use than
    /// `Options::max_open_writers` (default 256), so writers are retired and reopened.
    many_orgs: Vec<Event>,
    /// `serde_json::to_vec` of each event.
    json: Vec<Vec<u8>>,
    keys: Arc<Keyring>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cfg = WorkloadConfig {
            events: POOL as u64,
            orgs: 4,
            days: 28,
            seed: 1,
            start: Timestamp(1_767_225_600_000_000 + 86_400_000_000), // 2026-01-02
            out_of_order: 0.01,
        };
        let events: Vec<Event> = Workload::new(cfg).collect();
        assert_eq!(events.len(), POOL);
        let one_org = events
            .iter()
            .map(|e| Event {
                org_id: "org-000".into(),
                ..e.clone()
            })
            .collect();
        // Spread like the CLI's `gen --orgs 1000`: every org active, in no fixed order.
        let many_orgs: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(i, e)| Event {
                org_id: format!("org-{:04}", (i * 7_919) % MANY_ORGS),
                ..e.clone()
            })
            .collect();
        let json = events
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap())
            .collect();
        let keys = Arc::new(Keyring::in_memory());
        let mut orgs: Vec<&str> = events
            .iter()
            .chain(&many_orgs)
            .map(|e| e.org_id.as_str())
            .collect();
        orgs.sort_unstable();
        orgs.dedup();
        for org in orgs {
            keys.rotate(&OrgId::new(org).unwrap()).unwrap();
        }
        Fixture {
            events,
            one_org,
            many_orgs,
            json,
            keys,
        }
    })
}

fn bench_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("bench-append-")
        .tempdir_in(bench_root())
        .unwrap()
}

/// One call of a routine: what it did and how long it took (unscaled).
#[derive(Clone, Debug, Default)]
struct Sample {
    events: u64,
    elapsed: Duration,
    /// Bytes the segment files grew by, or bytes written (bounds).
    bytes: u64,
    /// Per-operation latencies (fsync bound only).
    latencies: Vec<Duration>,
}

fn results() -> &'static Mutex<BTreeMap<String, Vec<Sample>>> {
    static R: OnceLock<Mutex<BTreeMap<String, Vec<Sample>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn record(name: &str, s: Sample) {
    results()
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .push(s);
}

/// The measurement samples of a benchmark: the last `samples` calls of the profile (earlier
/// ones were criterion's warm-up).
fn measured(name: &str) -> Option<Vec<Sample>> {
    let r = results().lock().unwrap();
    let all = r.get(name)?;
    Some(all[all.len().saturating_sub(profile::append().samples)..].to_vec())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median over samples of seconds per event.
fn secs_per_event(name: &str) -> Option<f64> {
    let s = measured(name)?;
    Some(median(
        s.iter()
            .map(|s| s.elapsed.as_secs_f64() / s.events.max(1) as f64)
            .collect(),
    ))
}

fn events_per_sec(name: &str) -> Option<f64> {
    secs_per_event(name).map(|s| 1.0 / s)
}

/// Median over samples of bytes per second.
fn bytes_per_sec(name: &str) -> Option<f64> {
    let s = measured(name)?;
    Some(median(
        s.iter()
            .map(|s| s.bytes as f64 / s.elapsed.as_secs_f64())
            .collect(),
    ))
}

/// Every sample of `name`, warm-up included (for probes interleaved with a benchmark).
fn all_samples(name: &str) -> Option<Vec<Sample>> {
    results().lock().unwrap().get(name).cloned()
}

/// Percentile `p` of the latencies in `samples`.
fn percentile(samples: Option<Vec<Sample>>, p: f64) -> Option<Duration> {
    let mut all: Vec<Duration> = samples?.into_iter().flat_map(|s| s.latencies).collect();
    if all.is_empty() {
        return None;
    }
    all.sort();
    let i = ((all.len() - 1) as f64 * p).round() as usize;
    Some(all[i])
}

/// Rounds `iters` up to whole rounds of `per_round` events; returns (rounds, events).
fn rounds(iters: u64, per_round: u64) -> (u64, u64) {
    let r = iters.div_ceil(per_round).max(1);
    (r, r * per_round)
}

/// The elapsed time criterion should see for `iters` iterations when `events` were run.
fn scaled(elapsed: Duration, iters: u64, events: u64) -> Duration {
    elapsed.mul_f64(iters as f64 / events as f64)
}

/// Sums the sizes of files under `dir` whose extension is one of `exts`.
fn file_bytes(dir: &Path, exts: &[&str]) -> u64 {
    files(dir, exts)
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|md| md.len())
        .sum()
}

/// Files under `dir`, at any depth, whose extension is one of `exts`.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            out.extend(files(&p, exts));
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.contains(&x))
        {
            out.push(p);
        }
    }
    out
}

/// Runs `body(thread_index)` on `threads` threads started together; returns the time from
/// the start signal to the last thread's end.
fn run_threads<F>(threads: usize, body: F) -> Duration
where
    F: Fn(usize) + Sync,
{
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, body) = (&barrier, &body);
                s.spawn(move || {
                    barrier.wait();
                    body(t);
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

/// Appends `n` blocks of 4 KiB to `file` at `*off`, each followed by fdatasync; returns the
/// latencies. Run between the samples of durable benchmarks, so that their bound is measured
/// at the same time as they are (fsync latency on this machine drifts by 10x within minutes).
fn fsync_probe(file: &File, off: &mut u64, n: usize) -> Vec<Duration> {
    let block = [0x5au8; 4096];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            file.write_all_at(&block, *off).unwrap();
            file.sync_data().unwrap();
            *off += block.len() as u64;
            t.elapsed()
        })
        .collect()
}

/// Writes `mib` MiB to a fresh file in `dir` as 1 MiB writes each followed by fdatasync;
/// returns the elapsed time.
fn bandwidth_probe(dir: &Path, mib: u64) -> Duration {
    let chunk = vec![0xc3u8; 1 << 20];
    let path = dir.join("bandwidth-probe");
    let file = File::create(&path).unwrap();
    let start = Instant::now();
    for i in 0..mib {
        file.write_all_at(&chunk, i << 20).unwrap();
        file.sync_data().unwrap();
    }
    let el = start.elapsed();
    drop(file);
    fs::remove_file(&path).unwrap();
    el
}

/// A probe file for `fsync_probe`.
fn probe_file(dir: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("fsync-probe"))
        .unwrap()
}

/// Flushes every dirty page of the machine (`sync(1)`) before a benchmark starts, so that it
/// does not pay for the writeback of the one before it (a `Never` run leaves hundreds of MB
/// dirty, and fsync latency here goes from ~0.3 ms to ~4 ms while the disk is busy).
/// Also notes the load average, since other processes on the machine move every figure.
fn settle(name: &str) {
    let _ = std::process::Command::new("sync").status();
    loads().lock().unwrap().push((name.to_string(), loadavg()));
}

/// `(benchmark, 1-minute load average)` as each benchmark started.
fn loads() -> &'static Mutex<Vec<(String, String)>> {
    static L: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// fsyncs per interleaved probe.
const PROBE_FSYNCS: usize = 20;
/// MiB per interleaved bandwidth probe.
const PROBE_MIB: u64 = 8;

fn configure<'a>(
    c: &'a mut Criterion,
    group: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(group);
    let t = profile::append();
    g.sample_size(t.samples)
        .warm_up_time(t.warm_up)
        .measurement_time(t.measure)
        .sampling_mode(SamplingMode::Flat)
        .nresamples(10_000);
    g
}

// ---------------------------------------------------------------------------------------
// Physical bounds
// ---------------------------------------------------------------------------------------

fn bounds(c: &mut Criterion) {
    let f = fixture();
    let dir = tempdir();
    let mut g = configure(c, "bound");

    // fdatasync latency of a 4 KiB append to a file that grows (as a segment does).
    {
        settle("fdatasync_4k_append");
        let path = dir.path().join("fsync-4k");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let block = vec![0xa5u8; 4096];
        let mut off = 0u64;
        g.throughput(Throughput::Elements(1));
        g.bench_function("fdatasync_4k_append", |b| {
            b.iter_custom(|iters| {
                let mut lat = Vec::with_capacity(iters as usize);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    file.write_all_at(&block, off).unwrap();
                    file.sync_data().unwrap();
                    let d = t.elapsed();
                    off += block.len() as u64;
                    total += d;
                    lat.push(d);
                }
                record(
                    "bound/fdatasync_4k_append",
                    Sample {
                        events: iters,
                        elapsed: total,
                        bytes: iters * 4096,
                        latencies: lat,
                    },
                );
                total
            });
        });
        drop(file);
        let _ = fs::remove_file(&path);
    }

    // Sequential bandwidth: 1 MiB appends, each followed by fdatasync, into a fresh file
    // per sample.
    {
        settle("write_1MiB_fdatasync");
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + 3) as u8).collect();
        g.throughput(Throughput::Bytes(chunk.len() as u64));
        g.bench_function("write_1MiB_fdatasync", |b| {
            b.iter_custom(|iters| {
                let path = dir.path().join("seq");
                let file = File::create(&path).unwrap();
                let start = Instant::now();
                for i in 0..iters {
                    file.write_all_at(&chunk, i * chunk.len() as u64).unwrap();
                    file.sync_data().unwrap();
                }
                let el = start.elapsed();
                drop(file);
                fs::remove_file(&path).unwrap();
                record(
                    "bound/write_1MiB_fdatasync",
                    Sample {
                        events: iters,
                        elapsed: el,
                        bytes: iters * chunk.len() as u64,
                        latencies: Vec::new(),
                    },
                );
                el
            });
        });
    }

    // Page-cache bandwidth: 256 KiB `pwrite`s (the writer's buffer) at the end of a growing
    // file, no fsync: what `Durability::Never` pays the kernel for each byte it appends. The
    // file is cut back to empty every 1 GiB (outside the clock), so a sample never fills
    // memory; each write still allocates fresh page-cache pages, as a growing segment does.
    {
        const CHUNK: u64 = 256 << 10;
        const CUT: u64 = 1 << 30;
        let chunk: Vec<u8> = (0..CHUNK as u32).map(|i| (i * 13 + 5) as u8).collect();
        g.throughput(Throughput::Bytes(CHUNK));
        g.bench_function("pagecache_write_256KiB", |b| {
            b.iter_custom(|iters| {
                let path = dir.path().join("pagecache");
                let file = File::create(&path).unwrap();
                let mut el = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(CUT / CHUNK);
                    let start = Instant::now();
                    for i in 0..n {
                        file.write_all_at(&chunk, i * CHUNK).unwrap();
                    }
                    el += start.elapsed();
                    file.set_len(0).unwrap();
                    done += n;
                }
                drop(file);
                fs::remove_file(&path).unwrap();
                record(
                    "bound/pagecache_write_256KiB",
                    Sample {
                        events: iters,
                        elapsed: el,
                        bytes: iters * CHUNK,
                        latencies: Vec::new(),
                    },
                );
                el
            });
        });
    }

    // Waking a group of 64 waiting threads, with no work and no I/O: each "event" is one
    // thread arriving, the last arrival of a round wakes the other 63 with one FUTEX_WAKE, and
    // each sleeps in FUTEX_WAIT until then. The least a group commit of 64 single appends
    // pays on this machine besides the appends and the fsync ((b)'s closed-loop ceiling).
    {
        g.throughput(Throughput::Elements(1));
        g.bench_function("wake_64t", |b| {
            b.iter_custom(|iters| {
                let (rounds, events) = rounds(iters.max(64 * 8), 64);
                let el = wake_rounds(64, rounds);
                record(
                    "bound/wake_64t",
                    Sample {
                        events,
                        elapsed: el,
                        ..Sample::default()
                    },
                );
                scaled(el, iters, events)
            });
        });
    }

    // SHA-256 over each event's JSON bytes, one digest per event.
    {
        g.throughput(Throughput::Elements(1));
        let mut i = 0usize;
        g.bench_function("sha256_event_json", |b| {
            b.iter_custom(|iters| {
                let mut bytes = 0u64;
                let start = Instant::now();
                for _ in 0..iters {
                    let j = &f.json[i];
                    black_box(Sha256::digest(black_box(j.as_slice())));
                    bytes += j.len() as u64;
                    i = (i + 1) % POOL;
                }
                let el = start.elapsed();
                record(
                    "bound/sha256_event_json",
                    Sample {
                        events: iters,
                        elapsed: el,
                        bytes,
                        latencies: Vec::new(),
                    },
                );
                el
            });
        });
    }
    g.finish();
}

/// `threads` threads meet `rounds` times; each meeting ends when the last one arrives and
/// wakes the others (one `FUTEX_WAKE`; waiters sleep in `FUTEX_WAIT`, taking no lock on the
/// way out, which is the cheapest wake-up Linux offers a group). Returns the elapsed time.
fn wake_rounds(threads: usize, rounds: u64) -> Duration {
    use rustix::thread::futex;
    use std::sync::atomic::AtomicU32;
    let round = AtomicU32::new(0);
    let arrived = AtomicUsize::new(0);
    run_threads(threads, |_| {
        for _ in 0..rounds {
            let r = round.load(Ordering::Acquire);
            if arrived.fetch_add(1, Ordering::AcqRel) + 1 == threads {
                arrived.store(0, Ordering::Release);
                round.store(r.wrapping_add(1), Ordering::Release);
                // The count is an `int` in the kernel: all ones would read as -1.
                let _ = futex::wake(&round, futex::Flags::PRIVATE, i32::MAX as u32);
            } else {
                while round.load(Ordering::Acquire) == r {
                    let _ = futex::wait(&round, futex::Flags::PRIVATE, r, None);
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// auditlog
// ---------------------------------------------------------------------------------------

fn open_log(dir: &Path, durability: Durability) -> Log {
    let f = fixture();
    let opts = Options::new(f.keys.clone()).durability(durability);
    let log = Log::open(dir, opts).unwrap();
    // Create every (org, month) segment before timing starts.
    log.append_batch(&f.events[..BATCH]).unwrap();
    log.append_batch(&f.one_org[..1]).unwrap();
    log
}

/// [`open_log`] for `never_1t_append_many_orgs`: the segment of each of its orgs created
/// before timing starts (the first `MANY_ORGS` events cover them all).
fn open_many_orgs_log(dir: &Path) -> Log {
    let f = fixture();
    let opts = Options::new(f.keys.clone()).durability(Durability::Never);
    let log = Log::open(dir, opts).unwrap();
    log.append_batch(&f.many_orgs[..MANY_ORGS]).unwrap();
    log.sync().unwrap();
    log
}

/// `threads` threads each append `per_thread` events, one `append` call each, taking events
/// from `pool` in order via a shared cursor.
fn threaded_appends(
    log: &Log,
    pool: &[Event],
    cursor: &AtomicUsize,
    threads: usize,
    per_thread: u64,
) -> Duration {
    run_threads(threads, |_| {
        for _ in 0..per_thread {
            let i = cursor.fetch_add(1, Ordering::Relaxed) % pool.len();
            black_box(log.append(&pool[i]).unwrap());
        }
    })
}

/// `threads` threads each append `batches` batches of `BATCH` consecutive events.
fn threaded_batches(
    log: &Log,
    pool: &[Event],
    cursor: &AtomicUsize,
    threads: usize,
    batches: u64,
) -> Duration {
    run_threads(threads, |_| {
        for _ in 0..batches {
            let start = cursor.fetch_add(BATCH, Ordering::Relaxed) % pool.len();
            let batch = &pool[start..start + BATCH];
            black_box(log.append_batch(batch).unwrap());
        }
    })
}

/// A `Never` log in a directory of its own, replaced by a fresh one once it has taken
/// `NEVER_REOPEN_EVENTS`, so that a long run does not fill the disk.
struct FreshLog {
    path: PathBuf,
    open: fn(&Path) -> Log,
    log: Option<Log>,
    since_open: u64,
    _dir: tempfile::TempDir,
}

impl FreshLog {
    fn new(open: fn(&Path) -> Log) -> FreshLog {
        let dir = tempdir();
        let path = dir.path().join("log");
        FreshLog {
            log: Some(open(&path)),
            path,
            open,
            since_open: 0,
            _dir: dir,
        }
    }

    /// The log for the next `events` appends (outside the clock: a replacement happens here).
    fn take_events(&mut self, events: u64) -> &Log {
        if self.since_open > NEVER_REOPEN_EVENTS {
            self.log.take().unwrap().close().unwrap();
            fs::remove_dir_all(&self.path).unwrap();
            self.log = Some((self.open)(&self.path));
            self.since_open = 0;
        }
        self.since_open += events;
        self.log.as_ref().unwrap()
    }

    fn close(mut self) {
        self.log.take().unwrap().close().unwrap();
    }
}

fn open_never_log(dir: &Path) -> Log {
    open_log(dir, Durability::Never)
}

/// `Durability::Interval` with a 1 s window: written to the OS per append or batch,
/// fsynced in the background once a second.
fn open_interval_log(dir: &Path) -> Log {
    open_log(dir, Durability::Interval(Duration::from_secs(1)))
}

fn auditlog_benches(c: &mut Criterion) {
    let f = fixture();
    let mut g = configure(c, "auditlog");
    g.throughput(Throughput::Elements(1));

    // (a) One thread, Durability::Never, single appends: over the whole pool (20,000 events
    // whose `Value` trees do not fit in any cache, so every event's fields are cache misses),
    // and over its first HOT_POOL events (an application appends an event it has just
    // built, whose fields are in cache).
    // Also over the pool spread over 1,000 orgs, at the default `max_open_writers` (256):
    // nearly every append finds its writer retired and reopens it.
    let many: fn(&Path) -> Log = open_many_orgs_log;
    let few: fn(&Path) -> Log = open_never_log;
    for (name, pool, open) in [
        ("never_1t_append", &f.events[..], few),
        ("never_1t_append_hot", &f.events[..HOT_POOL], few),
        ("never_1t_append_many_orgs", &f.many_orgs[..], many),
    ] {
        settle(name);
        let mut log = FreshLog::new(open);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let l = log.take_events(iters);
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(l.append(&pool[i]).unwrap());
                    i = (i + 1) % pool.len();
                }
                let el = start.elapsed();
                record(
                    &format!("auditlog/{name}"),
                    Sample {
                        events: iters,
                        elapsed: el,
                        ..Sample::default()
                    },
                );
                el
            });
        });
        log.close();
    }

    // Never, append_batch of 1,000. One thread: the engine's best case. Four threads: (c)
    // without fsync, the same threads and batches on the same cores, the most segment
    // bandwidth (c) could reach if its fsyncs cost nothing: (c)'s CPU ceiling.
    // Interval (1 s), one thread: the mode that matches SQLite synchronous=OFF. Each batch is
    // written to the OS before `append_batch` returns (it survives a crash of the process, as
    // OFF's WAL frames, written at each commit, do); Never keeps up to 1 MiB per segment in
    // the process and leaves the `pwrite` to the background flusher on the other core.
    let interval: fn(&Path) -> Log = open_interval_log;
    for (name, threads, open) in [
        ("never_1t_batch1000", 1, few),
        ("interval_1t_batch1000", 1, interval),
        ("never_4t_batch1000", 4, few),
    ] {
        settle(name);
        let mut log = FreshLog::new(open);
        let cursor = AtomicUsize::new(0);
        let key = format!("auditlog/{name}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (batches, events) = rounds(iters, (threads * BATCH) as u64);
                let l = log.take_events(events);
                let el = if threads == 1 {
                    let start = Instant::now();
                    for _ in 0..batches {
                        let s = cursor.fetch_add(BATCH, Ordering::Relaxed) % POOL;
                        black_box(l.append_batch(&f.events[s..s + BATCH]).unwrap());
                    }
                    start.elapsed()
                } else {
                    threaded_batches(l, &f.events, &cursor, threads, batches)
                };
                record(
                    &key,
                    Sample {
                        events,
                        elapsed: el,
                        ..Sample::default()
                    },
                );
                scaled(el, iters, events)
            });
        });
        log.close();
    }

    // (b) 64 threads, Always, single appends (group commit). Reference workload (4 orgs:
    // 4 segment writers) and one org (one writer).
    for (name, pool) in [
        ("always_64t_append", &f.events),
        ("always_64t_append_1org", &f.one_org),
    ] {
        settle(name);
        let dir = tempdir();
        let path = dir.path().join("log");
        let log = open_log(&path, Durability::Always);
        let cursor = AtomicUsize::new(0);
        let key = format!("auditlog/{name}");
        let probe = probe_file(dir.path());
        let mut probe_off = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                record(
                    &format!("probe/{name}"),
                    Sample {
                        latencies: fsync_probe(&probe, &mut probe_off, PROBE_FSYNCS),
                        ..Sample::default()
                    },
                );
                // At least 8 appends per thread, so one sample spans several fsyncs.
                let (per_thread, events) = rounds(iters.max(8 * 64), 64);
                let before = file_bytes(&path, &["seg"]);
                let el = threaded_appends(&log, pool, &cursor, 64, per_thread);
                let bytes = file_bytes(&path, &["seg"]) - before;
                record(
                    &key,
                    Sample {
                        events,
                        elapsed: el,
                        bytes,
                        latencies: Vec::new(),
                    },
                );
                scaled(el, iters, events)
            });
        });
        log.close().unwrap();
    }

    // (c) 4 threads, Always, append_batch of 1,000 each.
    {
        settle("always_4t_batch1000");
        let dir = tempdir();
        let path = dir.path().join("log");
        let log = open_log(&path, Durability::Always);
        let cursor = AtomicUsize::new(0);
        g.bench_function("always_4t_batch1000", |b| {
            b.iter_custom(|iters| {
                record(
                    "probe/always_4t_batch1000",
                    Sample {
                        events: PROBE_MIB,
                        elapsed: bandwidth_probe(dir.path(), PROBE_MIB),
                        bytes: PROBE_MIB << 20,
                        latencies: Vec::new(),
                    },
                );
                let (batches, events) = rounds(iters, 4 * BATCH as u64);
                let before = file_bytes(&path, &["seg"]);
                let el = threaded_batches(&log, &f.events, &cursor, 4, batches);
                let bytes = file_bytes(&path, &["seg"]) - before;
                record(
                    "auditlog/always_4t_batch1000",
                    Sample {
                        events,
                        elapsed: el,
                        bytes,
                        latencies: Vec::new(),
                    },
                );
                scaled(el, iters, events)
            });
        });
        log.close().unwrap();
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// SQLite peer: one table, four indexes, WAL, application hash chain + HMAC column
// ---------------------------------------------------------------------------------------

// The table, row encoding and transaction are in `common/sqlite.rs` (shared with the verify
// bench).

/// How the threads of a SQLite benchmark reach the database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Conns {
    /// One connection per thread; the write lock is waited for by SQLite's busy handler.
    PerThread,
    /// One connection shared behind a mutex: commits queue on the mutex instead.
    Shared,
}

/// The connections of a SQLite benchmark with `threads` threads, opened once per benchmark
/// (as auditlog's `Log` is) and kept across its samples.
fn sql_conns(path: &Path, sync: SqlSync, conns: Conns, threads: usize) -> Vec<Mutex<Connection>> {
    let n = match conns {
        Conns::PerThread => threads,
        Conns::Shared => 1,
    };
    (0..n).map(|_| Mutex::new(sql_open(path, sync))).collect()
}

/// `threads` threads each commit `txs` transactions of `per_tx` rows taken in order from the
/// pool, thread `t` through `conns[t % conns.len()]`.
fn sql_threads(
    conns: &[Mutex<Connection>],
    cursor: &AtomicUsize,
    threads: usize,
    txs: u64,
    per_tx: usize,
) -> Duration {
    let f = fixture();
    let mac = sql_mac();
    run_threads(threads, |t| {
        let conn = &conns[t % conns.len()];
        for _ in 0..txs {
            let start = cursor.fetch_add(per_tx, Ordering::Relaxed) % POOL;
            // Serialising the row happens outside the write lock; chaining must be inside.
            let rows: Vec<Row> = f.events[start..start + per_tx]
                .iter()
                .map(sql_row)
                .collect();
            sql_commit(&mut conn.lock().unwrap(), &rows, &mac);
        }
    })
}

fn sqlite_benches(c: &mut Criterion) {
    let mut g = configure(c, "sqlite");
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, SqlSync, Conns, usize, usize); 5] = [
        ("off_1t_batch1000", SqlSync::Off, Conns::PerThread, 1, BATCH),
        (
            "full_1t_batch1000",
            SqlSync::Full,
            Conns::PerThread,
            1,
            BATCH,
        ),
        (
            "full_4t_batch1000",
            SqlSync::Full,
            Conns::PerThread,
            4,
            BATCH,
        ),
        ("full_64t_single", SqlSync::Full, Conns::PerThread, 64, 1),
        (
            "full_64t_single_shared",
            SqlSync::Full,
            Conns::Shared,
            64,
            1,
        ),
    ];
    for (name, sync, conns, threads, per_tx) in cases {
        settle(name);
        let dir = tempdir();
        let path = dir.path().join("audit.db");
        sql_create(&path);
        // Dropped before `dir` (declared after it), at the end of the benchmark.
        let conns = sql_conns(&path, sync, conns, threads);
        let cursor = AtomicUsize::new(0);
        let key = format!("sqlite/{name}");
        let probe = probe_file(dir.path());
        let mut probe_off = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                if sync == SqlSync::Full {
                    record(
                        &format!("probe/{name}"),
                        Sample {
                            latencies: fsync_probe(&probe, &mut probe_off, PROBE_FSYNCS),
                            ..Sample::default()
                        },
                    );
                }
                let per_round = (threads * per_tx) as u64;
                let (txs, events) = rounds(iters, per_round);
                let el = sql_threads(&conns, &cursor, threads, txs, per_tx);
                record(
                    &key,
                    Sample {
                        events,
                        elapsed: el,
                        ..Sample::default()
                    },
                );
                scaled(el, iters, events)
            });
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Bytes on disk, and the summary
// ---------------------------------------------------------------------------------------

struct Bytes {
    json: u64,
    seg: u64,
    idx: u64,
    sqlite: u64,
    /// The segments part by part.
    parts: bytes::SegmentBytes,
    /// SQLite's b-trees: (name, bytes, payload bytes).
    sqlite_trees: Vec<(String, u64, u64)>,
}

fn bytes_on_disk() -> Bytes {
    let f = fixture();
    let dir = tempdir();
    let path = dir.path().join("log");
    let opts = Options::new(f.keys.clone()).durability(Durability::Never);
    let log = Log::open(&path, opts).unwrap();
    for chunk in f.events.chunks(BATCH) {
        log.append_batch(chunk).unwrap();
    }
    log.close().unwrap();
    let seg = file_bytes(&path, &["seg"]);
    let idx = file_bytes(&path, &["idx"]);
    let mut parts = bytes::SegmentBytes::default();
    for p in files(&path, &["seg"]) {
        parts.add_segment(&p);
    }
    assert_eq!(parts.total(), seg, "every segment byte is accounted for");

    let db = dir.path().join("audit.db");
    sql_create(&db);
    {
        let mut conn = sql_open(&db, SqlSync::Off);
        let mac = sql_mac();
        for chunk in f.events.chunks(BATCH) {
            let rows: Vec<Row> = chunk.iter().map(sql_row).collect();
            sql_commit(&mut conn, &rows, &mac);
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let sqlite = file_bytes(dir.path(), &["db", "db-wal", "db-shm"]);
    Bytes {
        json: f.json.iter().map(|j| j.len() as u64).sum(),
        seg,
        idx,
        sqlite,
        parts,
        sqlite_trees: bytes::sqlite_btrees(&db),
    }
}

fn fmt_rate(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:>12.0}"))
}

/// A figure with one decimal, unpadded.
fn fmt_1(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.3}"))
}

fn verdict(v: Option<f64>, ok: impl Fn(f64) -> bool) -> &'static str {
    match v {
        Some(v) if ok(v) => "MET",
        Some(_) => "MISSED",
        None => "not measured",
    }
}

/// Median and p99 of the fsync probes interleaved with benchmark `name`.
fn probe_fsync(name: &str) -> (Option<Duration>, Option<Duration>, usize) {
    let s = all_samples(&format!("probe/{name}"));
    let n = s
        .as_ref()
        .map_or(0, |s| s.iter().map(|s| s.latencies.len()).sum());
    (percentile(s.clone(), 0.5), percentile(s, 0.99), n)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
}

fn summary(_c: &mut Criterion) {
    let f = fixture();
    let b = bytes_on_disk();
    let n = POOL as f64;
    let json_avg = b.json as f64 / n;
    let on_disk = (b.seg + b.idx) as f64 / n;

    // Bounds measured by criterion at the start of the run.
    let fsync_s = all_samples("bound/fdatasync_4k_append");
    let fsync_p50 = percentile(fsync_s.clone(), 0.50);
    let fsync_p99 = percentile(fsync_s, 0.99);
    let disk_bw = bytes_per_sec("bound/write_1MiB_fdatasync");
    let sha = secs_per_event("bound/sha256_event_json");
    let sha_bw = bytes_per_sec("bound/sha256_event_json");
    let pc_bw = bytes_per_sec("bound/pagecache_write_256KiB");
    // The kernel's copy of one event's record into the page cache, at that bandwidth.
    let pc = pc_bw.map(|bw| b.seg as f64 / n / bw);

    let a = secs_per_event("auditlog/never_1t_append");
    let a_rate = a.map(|s| 1.0 / s);
    let a_hot = secs_per_event("auditlog/never_1t_append_hot");
    let a_hot_rate = a_hot.map(|s| 1.0 / s);
    let a_batch = events_per_sec("auditlog/never_1t_batch1000");
    let a_interval = events_per_sec("auditlog/interval_1t_batch1000");
    let a_many = events_per_sec("auditlog/never_1t_append_many_orgs");
    let g64 = events_per_sec("auditlog/always_64t_append");
    let g64_1 = events_per_sec("auditlog/always_64t_append_1org");
    let c4 = events_per_sec("auditlog/always_4t_batch1000");
    let c4_bw = bytes_per_sec("auditlog/always_4t_batch1000");

    // Bounds measured between the samples of the benchmark they bound.
    let (g64_p50, g64_p99, g64_n) = probe_fsync("always_64t_append");
    let (g64_1_p50, g64_1_p99, g64_1_n) = probe_fsync("always_64t_append_1org");
    let bound = |d: Option<Duration>| d.map(|d| 64.0 / d.as_secs_f64());
    let c4_disk_bw = all_samples("probe/always_4t_batch1000").map(|s| {
        median(
            s.iter()
                .map(|s| s.bytes as f64 / s.elapsed.as_secs_f64())
                .collect(),
        )
    });

    let s_off = events_per_sec("sqlite/off_1t_batch1000");
    let s_full = events_per_sec("sqlite/full_1t_batch1000");
    let s_full4 = events_per_sec("sqlite/full_4t_batch1000");
    let s_64 = events_per_sec("sqlite/full_64t_single");
    let s_64s = events_per_sec("sqlite/full_64t_single_shared");

    let eff = ratio(g64, bound(g64_p50));
    let bw_ratio = ratio(c4_bw, c4_disk_bw);

    // (b)'s closed-loop estimate F / (F + R). R is at least 64 wake-ups (`bound/wake_64t`,
    // both cores) plus 64 appends at (a)'s hot cost spread over the cores. It bounds only a
    // writer with one fsync in flight whose group is all 64 threads: then every thread waits
    // on that fsync, a round lasts F + R, and efficiency (64/(F + R)) / (64/F) is at most
    // F / (F + R). It is not a bound on what an engine can do: one writer alternating two
    // groups (one fsyncing while the other refills) can reach up to F / max(2F, F + R'),
    // R' the smaller group's refill, so about max(0.5, F / (F + R)); and with 4 orgs (4
    // writers whose fsyncs overlap) it bounds nothing. It is printed as an estimate.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let wake_round = secs_per_event("bound/wake_64t").map(|w| 64.0 * w);
    let refill = wake_round.zip(a_hot).map(|(w, a)| w + 64.0 * a / cores);
    let ceiling = |f: Option<Duration>| {
        f.zip(refill)
            .map(|(f, r)| f.as_secs_f64() / (f.as_secs_f64() + r))
    };
    // (c)'s CPU ceiling: the same threads and batches without fsync, at (c)'s bytes per event.
    let c4_never = events_per_sec("auditlog/never_4t_batch1000");
    let c4_never_bw = c4_never.map(|e| e * b.seg as f64 / n);

    println!();
    println!("==================== append bench summary ====================");
    let t = profile::append();
    println!(
        "profile: {} ({} samples, {:?} warm-up, {:?} measurement per benchmark)",
        profile::Profile::get().name(),
        t.samples,
        t.warm_up,
        t.measure
    );
    println!(
        "dir: {} (one filesystem for every figure)",
        bench_root().display()
    );
    println!(
        "workload: {POOL} events, 4 orgs, 2026-01, avg JSON {json_avg:.0} B (max {} B)",
        f.json.iter().map(Vec::len).max().unwrap_or(0)
    );
    println!();
    println!("-- physical bounds (criterion, start of run) --");
    println!(
        "fdatasync of a 4 KiB append    median {}  p99 {}",
        ms(fsync_p50),
        ms(fsync_p99)
    );
    println!(
        "1 MiB write + fdatasync        {} MB/s",
        fmt_rate(disk_bw.map(|v| v / 1e6))
    );
    println!(
        "waking 64 waiting threads      {} us a round (one FUTEX_WAKE; each thread sleeps and wakes once)",
        fmt_1(wake_round.map(|w| w * 1e6))
    );
    println!(
        "SHA-256 of event JSON          {} ns/event  ({} MB/s)",
        fmt_rate(sha.map(|s| s * 1e9)),
        fmt_rate(sha_bw.map(|v| v / 1e6))
    );
    println!(
        "page cache, 256 KiB pwrite     {} MB/s = {} ns per event's {:.0}-byte record (no fsync)",
        fmt_rate(pc_bw.map(|v| v / 1e6)),
        fmt_rate(pc.map(|s| s * 1e9)),
        b.seg as f64 / n
    );
    println!();
    println!("-- auditlog (bounds of (b) and (c) re-measured between their samples) --");
    println!(
        "(a) Never, 1 thread, append    {} events/s {} ns/event = {} x SHA-256 of the event   target >= 500000/s: {}",
        fmt_rate(a_rate),
        fmt_rate(a.map(|s| s * 1e9)),
        fmt_ratio(ratio(a, sha)),
        verdict(a_rate, |v| v >= 500_000.0)
    );
    println!(
        "    same, {HOT_POOL} events in cache  {} events/s {} ns/event = {} x SHA-256 of the event   target >= 500000/s: {}",
        fmt_rate(a_hot_rate),
        fmt_rate(a_hot.map(|s| s * 1e9)),
        fmt_ratio(ratio(a_hot, sha)),
        verdict(a_hot_rate, |v| v >= 500_000.0)
    );
    println!(
        "    Never, 1 thread, batch 1000 {} events/s",
        fmt_rate(a_batch)
    );
    println!(
        "    Interval 1 s, 1 thr, b. 1000 {} events/s  (written to the OS per batch, as SQLite OFF per commit)",
        fmt_rate(a_interval)
    );
    println!(
        "    same pool, {MANY_ORGS} orgs       {} events/s = {} x (a)  (writers retired and reopened: {MANY_ORGS} orgs, 256 open)",
        fmt_rate(a_many),
        fmt_ratio(ratio(a_many, a_rate))
    );
    println!(
        "(b) Always, 64 thr, append     {} events/s  fsync meanwhile median {} p99 {} (n={g64_n})  bound 64/fsync {} /s  efficiency {}   target >= 0.8: {}",
        fmt_rate(g64),
        ms(g64_p50),
        ms(g64_p99),
        fmt_rate(bound(g64_p50)),
        fmt_ratio(eff),
        verdict(eff, |v| v >= 0.8)
    );
    println!(
        "    efficiency against the start-of-run fsync median: {}",
        fmt_ratio(ratio(g64, bound(fsync_p50)))
    );
    println!(
        "    one-fsync-in-flight estimate F/(F+R): {}  (F = fsync meanwhile; R = 64 wake-ups {} us + 64 appends at (a) hot on {cores} cores {} us; \
         a bound only for one writer with one fsync in flight, not for 4 writers nor pipelined groups); \
         F >= 4R = {} ms; efficiency / estimate {}",
        fmt_ratio(ceiling(g64_p50)),
        fmt_1(wake_round.map(|w| w * 1e6)),
        fmt_1(a_hot.map(|a| 64.0 * a / cores * 1e6)),
        fmt_ratio(refill.map(|r| 4.0 * r * 1e3)),
        fmt_ratio(ratio(eff, ceiling(g64_p50)))
    );
    println!(
        "    same, one org (1 writer)   {} events/s  fsync meanwhile median {} p99 {} (n={g64_1_n})  efficiency {}",
        fmt_rate(g64_1),
        ms(g64_1_p50),
        ms(g64_1_p99),
        fmt_ratio(ratio(g64_1, bound(g64_1_p50)))
    );
    println!(
        "(c) Always, 4 thr, batch 1000  {} events/s  segment growth {} MB/s; disk meanwhile {} MB/s; ratio {}   target >= 0.5: {}",
        fmt_rate(c4),
        fmt_rate(c4_bw.map(|v| v / 1e6)),
        fmt_rate(c4_disk_bw.map(|v| v / 1e6)),
        fmt_ratio(bw_ratio),
        verdict(bw_ratio, |v| v >= 0.5)
    );
    println!(
        "    ratio against the start-of-run bandwidth: {}",
        fmt_ratio(ratio(c4_bw, disk_bw))
    );
    println!(
        "    CPU ceiling: the same under Never {} events/s = {} MB/s of records = {} of the disk; (c) / it {}",
        fmt_rate(c4_never),
        fmt_rate(c4_never_bw.map(|v| v / 1e6)),
        fmt_ratio(ratio(c4_never_bw, c4_disk_bw)),
        fmt_ratio(ratio(c4, c4_never))
    );
    println!(
        "bytes/event on disk: segment {:.1} + index {:.1} = {on_disk:.1} B; JSON {json_avg:.1} B; ratio {:.3}   target <= 1.1: {}",
        b.seg as f64 / n,
        b.idx as f64 / n,
        on_disk / json_avg,
        verdict(Some(on_disk / json_avg), |v| v <= 1.1)
    );
    println!();
    println!("-- SQLite (WAL, 4 indexes, SHA-256 chain + HMAC column, 256 MiB cache) --");
    let sql_fsync = |name: &str| {
        let (p50, p99, _) = probe_fsync(name);
        format!("fsync meanwhile median {} p99 {}", ms(p50), ms(p99))
    };
    println!(
        "OFF,  1 thread, tx of 1000     {} events/s   Interval batch / it {} (same crash guarantee)   auditlog (a) / it {}   Never batch / it {} (Never: a process crash loses its buffer; its pwrite runs on the flusher's core)",
        fmt_rate(s_off),
        fmt_ratio(ratio(a_interval, s_off)),
        fmt_ratio(ratio(a_rate, s_off)),
        fmt_ratio(ratio(a_batch, s_off))
    );
    println!(
        "FULL, 1 thread, tx of 1000     {} events/s   auditlog (c) / it {}   ({})",
        fmt_rate(s_full),
        fmt_ratio(ratio(c4, s_full)),
        sql_fsync("full_1t_batch1000")
    );
    println!(
        "FULL, 4 thr, tx of 1000        {} events/s   auditlog (c) / it {}   ({})",
        fmt_rate(s_full4),
        fmt_ratio(ratio(c4, s_full4)),
        sql_fsync("full_4t_batch1000")
    );
    println!(
        "FULL, 64 thr, 1-row commits    {} events/s   auditlog (b) / it {}   ({})",
        fmt_rate(s_64),
        fmt_ratio(ratio(g64, s_64)),
        sql_fsync("full_64t_single")
    );
    println!(
        "  same, one shared connection  {} events/s   auditlog (b) / it {}   ({})",
        fmt_rate(s_64s),
        fmt_ratio(ratio(g64, s_64s)),
        sql_fsync("full_64t_single_shared")
    );
    println!(
        "bytes/event: SQLite {:.1} B (JSON ratio {:.3}); auditlog / SQLite {:.3}",
        b.sqlite as f64 / n,
        b.sqlite as f64 / b.json as f64,
        (b.seg + b.idx) as f64 / b.sqlite as f64
    );
    println!();
    println!("-- where the bytes go, per event --");
    println!("auditlog segments:");
    b.parts.print();
    println!("  {:<52} {:>7.1} B", "sidecar index", b.idx as f64 / n);
    println!("SQLite b-trees (pages; payload they hold):");
    for (name, pages, payload) in &b.sqlite_trees {
        println!(
            "  {name:<52} {:>7.1} B  (payload {:.1} B)",
            *pages as f64 / n,
            *payload as f64 / n
        );
    }
    for (level, dict) in [(1, 16 << 10), (3, 64 << 10)] {
        let (raw, packed, c_us, d_us) = b.parts.zstd_estimate(level, dict);
        let saved = (raw - packed) * n;
        println!(
            "zstd level {level}, {} KiB dictionary, each record's body and openings alone: \
             {raw:.1} -> {packed:.1} B; compress {c_us:.2} us, decompress {d_us:.2} us a record; \
             auditlog / SQLite would be {:.3}",
            dict >> 10,
            (b.seg + b.idx) as f64 / b.sqlite as f64 - saved / b.sqlite as f64
        );
    }
    println!();
    println!("-- runs (warm-up included): calls, events, seconds --");
    for (name, samples) in results().lock().unwrap().iter() {
        if name.starts_with("probe/") {
            continue;
        }
        println!(
            "{name:<36} {:>4} {:>10} {:>8.2}",
            samples.len(),
            samples.iter().map(|s| s.events).sum::<u64>(),
            samples.iter().map(|s| s.elapsed.as_secs_f64()).sum::<f64>()
        );
    }
    println!();
    let l = loads().lock().unwrap();
    let l: Vec<String> = l.iter().map(|(n, v)| format!("{n} {v}")).collect();
    println!("-- 1-min load average as each benchmark started (2 cores) --");
    println!("{}; at the end {}", l.join(", "), loadavg());
    println!("==============================================================");
}

criterion_group!(benches, bounds, auditlog_benches, sqlite_benches, summary);
criterion_main!(benches);
