#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]
//! Verification throughput against the SHA-256 bound, in one run (issue #3).
//!
//! Builds a log of a few hundred MB once (reference workload, `Durability::Never`,
//! `append_batch`) in a temporary directory under `target/tmp`, then measures, over the same
//! segment bytes (hot in the page cache):
//!
//! - `sha256_bound`: raw SHA-256 (sha2 crate) of every segment file, in memory: the bound;
//! - `sha256_records`: SHA-256 of every record's chained bytes, one call per record (the
//!   chain hash alone; shows the per-message cost);
//! - `crypto_floor`: all the hashing verification cannot skip, from pre-parsed records: the
//!   chain hash, the HMAC tag, and for records with personal data each slot's salt
//!   derivation and commitment and the commitment root (FORMAT.md §2.4);
//! - `verify_keys`: `auditlog::verify::verify` with keys (CRC, chain, seq, HMAC tags, body
//!   decoding, personal-data commitments, indexes, links), on every core (the default
//!   `VerifyOptions::threads`);
//! - `verify_keys_1t`: the same on one thread (`threads: Some(1)`), the one the ratios to the
//!   bound and to the crypto floor use: those two run on one core;
//! - `verify_no_keys`: the same without keys (no tags);
//! - `sqlite_verify`: the SQLite peer (`common/sqlite.rs`, the table the append bench
//!   measures) holding the same events, re-verified the way an application holding the HMAC
//!   key must: every row in chain order, row bytes rebuilt from the columns, chain hash and
//!   HMAC recomputed and compared (issue #5);
//! - `sqlite_verify_<n>t`: the same walk split into one id range per core, each from the
//!   stored hash before it (auditlog's `verify` also uses every core).
//!
//! Then prints MB/s, records/s and the ratio of one-thread verification to the one-core bound
//! (target ≥ 0.7; the parallel figure is printed beside it as wall time on every core),
//! and auditlog's `verify` ÷ SQLite's re-verification (target ≥ 5), from calls of every
//! routine taken in turn after criterion's samples.
//! Size: `AUDITLOG_VERIFY_BENCH_MB` (default: 100 in the short profile, 300 in the long one;
//! see `common/profile.rs`). Run: `cargo bench --bench verify` (about 45 s on the 2-core dev
//! machine) or `AUDITLOG_BENCH=long cargo bench --bench verify` (about 2 minutes).

#[path = "common/profile.rs"]
mod profile;
#[path = "common/sqlite.rs"]
mod sqlite;

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog::crypto::{Hash, Signer, Tag, chain_hash, commitment, derive_salt, pii_root};
use auditlog::format::body::{Opening, Openings, SealedBody};
use auditlog::verify::{VerifyOptions, verify};
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{Durability, KeyProvider, Keyring, Log, Options, OrgId};
use criterion::{Criterion, Throughput};
use sha2::{Digest, Sha256};
use sqlite::{Row, SqlSync, sql_commit, sql_create, sql_mac, sql_open, sql_row, sql_verify};

const ORGS: u32 = 4;
/// Bytes per event on disk, roughly, to size the workload.
const BYTES_PER_EVENT: u64 = 650;

struct Built {
    keys: Arc<Keyring>,
    /// Every segment file's bytes.
    segments: Vec<(PathBuf, Vec<u8>)>,
    records: u64,
    bytes: u64,
    /// Seconds spent appending to the log, and inserting into SQLite.
    log_secs: f64,
    sqlite_secs: f64,
    /// Bytes of the SQLite database (table and indexes, after a WAL checkpoint).
    sqlite_bytes: u64,
}

/// Appends the reference workload to a log in `dir` and, batch by batch, the same events to
/// the SQLite peer at `db` (synchronous=OFF, 1,000 rows per transaction, as the append bench
/// and its bytes-on-disk figure write it).
fn build(dir: &Path, db: &Path, target_bytes: u64) -> Built {
    let keys = Keyring::in_memory();
    for o in 0..ORGS {
        keys.rotate(&OrgId::new(&format!("org-{o:03}")).unwrap())
            .unwrap();
    }
    let keys = Arc::new(keys);
    let events = target_bytes / BYTES_PER_EVENT;
    let log = Log::open(
        dir,
        Options::new(keys.clone()).durability(Durability::Never),
    )
    .unwrap();
    sql_create(db);
    let mut conn = sql_open(db, SqlSync::Off);
    let mac = sql_mac();
    let (mut log_secs, mut sqlite_secs) = (0.0, 0.0);
    let mut append = |batch: &[auditlog::Event]| {
        let t = Instant::now();
        log.append_batch(batch).unwrap();
        log_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let rows: Vec<Row> = batch.iter().map(sql_row).collect();
        sql_commit(&mut conn, &rows, &mac);
        sqlite_secs += t.elapsed().as_secs_f64();
    };
    let mut batch = Vec::with_capacity(1000);
    for e in Workload::new(WorkloadConfig {
        events,
        orgs: ORGS,
        days: 90,
        seed: 3,
        ..WorkloadConfig::default()
    }) {
        batch.push(e);
        if batch.len() == 1000 {
            append(&batch);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        append(&batch);
    }
    log.close().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(conn);
    let sqlite_bytes = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            fs::metadata(p).map_or(0, |m| m.len())
        })
        .sum();
    let mut segments = Vec::new();
    for org in fs::read_dir(dir).unwrap() {
        let org = org.unwrap().path();
        if !org.is_dir() {
            continue;
        }
        for f in fs::read_dir(&org).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "seg") {
                let b = fs::read(&p).unwrap();
                segments.push((p, b));
            }
        }
    }
    segments.sort();
    let bytes = segments.iter().map(|(_, b)| b.len() as u64).sum();
    Built {
        keys,
        segments,
        records: events,
        bytes,
        log_secs,
        sqlite_secs,
        sqlite_bytes,
    }
}

/// The SQLite re-verification finds what it must: an intact table passes, an altered row and
/// a deleted row are one finding each, with one thread or several.
fn check_sqlite_verifier(dir: &Path) {
    let db = dir.join("tamper.db");
    sql_create(&db);
    let mut conn = sql_open(&db, SqlSync::Off);
    let mac = sql_mac();
    let events: Vec<auditlog::Event> = Workload::new(WorkloadConfig {
        events: 2_000,
        orgs: ORGS,
        days: 90,
        seed: 3,
        ..WorkloadConfig::default()
    })
    .collect();
    for chunk in events.chunks(1000) {
        let rows: Vec<Row> = chunk.iter().map(sql_row).collect();
        sql_commit(&mut conn, &rows, &mac);
    }
    for threads in [1, 2, 3] {
        let v = sql_verify(&db, threads);
        assert_eq!(
            (v.rows, v.bad.as_slice()),
            (2_000, &[][..]),
            "{threads} threads"
        );
    }
    conn.execute("UPDATE events SET after = '{\"x\":1}' WHERE id = 1000", [])
        .unwrap();
    conn.execute("DELETE FROM events WHERE id = 1500", [])
        .unwrap();
    for threads in [1, 2, 3] {
        let v = sql_verify(&db, threads);
        assert_eq!(
            (v.rows, v.bad.as_slice()),
            (1_999, &[1000, 1501][..]),
            "{threads} threads"
        );
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The chained bytes of each record (seq through the sealed body), walking frames.
fn chained_ranges(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = 256;
    while off + 64 <= b.len() {
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let sealed = u32::from_le_bytes(b[off + 60..off + 64].try_into().unwrap()) as usize;
        out.push((off + 8, off + 64 + sealed));
        off += len;
    }
    out
}

/// What the crypto floor hashes for one record, parsed beforehand.
struct Parsed {
    chained: (usize, usize),
    key_id: u32,
    tag: Tag,
    /// Seed (seeded openings) or explicit salts, and each open slot's value.
    seed: Option<[u8; 16]>,
    slots: Vec<(Option<[u8; 16]>, Vec<u8>)>,
    has_root: bool,
}

fn parse(b: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    for (s, e) in chained_ranges(b) {
        let off = s - 8;
        let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let body = SealedBody::decode(&b[off + 64..e], 0).unwrap();
        let openings = Openings::decode(&b[e..off + len - 32], 0, body.pii.len()).unwrap();
        let (seed, slots) = match openings {
            Openings::None => (None, Vec::new()),
            Openings::Seeded { seed, values } => (
                Some(seed),
                values.iter().map(|v| (None, v.to_vec())).collect(),
            ),
            Openings::Explicit(slots) => (
                None,
                slots
                    .iter()
                    .filter_map(|o| match o {
                        Opening::Open { salt, value } => Some((Some(*salt), value.to_vec())),
                        Opening::Erased { .. } => None,
                    })
                    .collect(),
            ),
        };
        out.push(Parsed {
            chained: (s, e),
            key_id: u32::from_le_bytes(b[off + 24..off + 28].try_into().unwrap()),
            tag: Tag(b[off + len - 32..off + len].try_into().unwrap()),
            seed,
            slots,
            has_root: body.pii_root.is_some(),
        });
    }
    out
}

/// Median wall time of each routine over `runs` rounds; each round calls every routine once,
/// in turn, so a change of load on the machine falls on all of them alike.
fn medians<const N: usize>(runs: usize, fs: [&dyn Fn(); N]) -> [Duration; N] {
    let mut t: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(runs));
    for _ in 0..runs {
        for (f, t) in fs.iter().zip(&mut t) {
            let s = Instant::now();
            f();
            t.push(s.elapsed());
        }
    }
    t.map(|mut t| {
        t.sort();
        t[runs / 2]
    })
}

fn main() {
    let settings = profile::verify();
    let mb: u64 = std::env::var("AUDITLOG_VERIFY_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(settings.mb);
    let tmp_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    fs::create_dir_all(&tmp_root).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("verify-bench-")
        .tempdir_in(&tmp_root)
        .unwrap();
    let dir = tmp.path().join("log");
    let db = tmp.path().join("audit.db");
    check_sqlite_verifier(tmp.path());
    eprintln!("load average before the build: {}", loadavg());
    let built = build(&dir, &db, mb * 1_000_000);
    eprintln!(
        "built {} records, {:.1} MB of segments in {} files, in {:.1} s; SQLite: {:.1} MB in {:.1} s",
        built.records,
        built.bytes as f64 / 1e6,
        built.segments.len(),
        built.log_secs,
        built.sqlite_bytes as f64 / 1e6,
        built.sqlite_secs
    );
    let keys: &dyn KeyProvider = &*built.keys;
    // Sanity: the log is intact, and verification covers every byte and record.
    let r = verify(&dir, Some(keys), &VerifyOptions::default()).unwrap();
    assert!(r.findings.is_empty(), "{:?}", r.findings.first());
    assert_eq!((r.records, r.bytes), (built.records, built.bytes));
    let ranges: Vec<Vec<(usize, usize)>> = built
        .segments
        .iter()
        .map(|(_, b)| chained_ranges(b))
        .collect();
    assert_eq!(
        ranges.iter().map(Vec::len).sum::<usize>() as u64,
        built.records
    );
    // Verification uses every core (one segment per worker), as auditlog's `verify` does.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let v = sql_verify(&db, threads);
        assert_eq!(
            (v.rows, v.bad.len()),
            (built.records, 0),
            "{threads} threads"
        );
    }

    let parsed: Vec<(OrgId, Vec<Parsed>)> = built
        .segments
        .iter()
        .map(|(p, b)| {
            let org = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
            (OrgId::new(org).unwrap(), parse(b))
        })
        .collect();
    let signers: Vec<Vec<Signer>> = (0..ORGS)
        .map(|o| {
            let org = OrgId::new(&format!("org-{o:03}")).unwrap();
            (1..=1)
                .map(|k| {
                    let id = auditlog::KeyId(k);
                    Signer::new(id, &keys.key(&org, id).unwrap().unwrap())
                })
                .collect()
        })
        .collect();
    let crypto_floor = || {
        for ((org, recs), (_, b)) in parsed.iter().zip(&built.segments) {
            let o: usize = org.as_str()[4..].parse().unwrap();
            for r in recs {
                let hash = chain_hash(&b[r.chained.0..r.chained.1]);
                let signer = &signers[o][r.key_id as usize - 1];
                assert!(signer.verify_record(org, &hash, &r.tag));
                let commitments: Vec<Hash> = r
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(i, (salt, v))| {
                        let salt = salt.unwrap_or_else(|| derive_salt(&r.seed.unwrap(), i as u8));
                        commitment(&salt, v)
                    })
                    .collect();
                if r.has_root {
                    black_box(pii_root(commitments.iter().copied()));
                }
            }
        }
    };
    let sha_bound = || {
        for (_, b) in &built.segments {
            black_box(Sha256::digest(b));
        }
    };
    let sha_records = || {
        for ((_, b), rs) in built.segments.iter().zip(&ranges) {
            for &(s, e) in rs {
                black_box(chain_hash(&b[s..e]));
            }
        }
    };
    let verify_keys = || {
        black_box(verify(&dir, Some(keys), &VerifyOptions::default()).unwrap());
    };
    // One thread: the bound and the crypto floor are one core's work, so the ratios to them
    // are taken against this, not against the default (every core).
    let one_thread = VerifyOptions {
        threads: Some(1),
        ..VerifyOptions::default()
    };
    let verify_keys_1t = || {
        black_box(verify(&dir, Some(keys), &one_thread).unwrap());
    };
    let verify_no_keys = || {
        black_box(verify(&dir, None, &VerifyOptions::default()).unwrap());
    };
    let sqlite_1t = || {
        let v = sql_verify(&db, 1);
        assert!(v.bad.is_empty());
        black_box(v);
    };
    let sqlite_par = || {
        let v = sql_verify(&db, cores);
        assert!(v.bad.is_empty());
        black_box(v);
    };
    let sqlite_par_name = format!("sqlite_verify_{cores}t");

    let t = settings.timing;
    let mut c = Criterion::default()
        .sample_size(t.samples)
        .warm_up_time(t.warm_up)
        .measurement_time(t.measure)
        .configure_from_args();
    eprintln!("load average before the benchmarks: {}", loadavg());
    {
        // The size in the name: criterion compares a run only with runs of the same size.
        let mut g = c.benchmark_group(format!("verify_{mb}MB"));
        g.throughput(Throughput::Bytes(built.bytes));
        g.bench_function("sha256_bound", |b| b.iter(sha_bound));
        g.bench_function("sha256_records", |b| b.iter(sha_records));
        g.bench_function("crypto_floor", |b| b.iter(crypto_floor));
        g.bench_function("verify_keys", |b| b.iter(verify_keys));
        g.bench_function("verify_keys_1t", |b| b.iter(verify_keys_1t));
        g.bench_function("verify_no_keys", |b| b.iter(verify_no_keys));
        // SQLite: same events, throughput in rows (its bytes are not auditlog's).
        g.throughput(Throughput::Elements(built.records));
        g.bench_function("sqlite_verify", |b| b.iter(sqlite_1t));
        if cores > 1 {
            g.bench_function(sqlite_par_name.as_str(), |b| b.iter(sqlite_par));
        }
        g.finish();
    }
    c.final_summary();
    let load_after_criterion = loadavg();

    // The figures, from medians measured here in the same run, every routine in turn.
    let runs = settings.summary_runs;
    let [
        bound,
        per_record,
        floor,
        with_keys,
        with_keys_1t,
        without,
        sql_1t,
        sql_par,
    ] = medians(
        runs,
        [
            &sha_bound,
            &sha_records,
            &crypto_floor,
            &verify_keys,
            &verify_keys_1t,
            &verify_no_keys,
            &sqlite_1t,
            &sqlite_par,
        ],
    );
    let mbps = |d: Duration| built.bytes as f64 / 1e6 / d.as_secs_f64();
    let rps = |d: Duration| built.records as f64 / d.as_secs_f64();
    println!();
    println!(
        "verification summary: {:.1} MB of segments, {} records (avg {:.0} B/record); profile {}, medians of {runs} calls each, taken in turn",
        built.bytes as f64 / 1e6,
        built.records,
        built.bytes as f64 / built.records as f64,
        profile::Profile::get().name()
    );
    println!(
        "  SHA-256 bound (whole files):   {:>8.1} MB/s  (one core, as the per-record and floor figures)",
        mbps(bound)
    );
    println!(
        "  SHA-256 per record (chained):  {:>8.1} MB/s  {:>10.0} records/s  ratio {:.2}",
        mbps(per_record),
        rps(per_record),
        bound.as_secs_f64() / per_record.as_secs_f64()
    );
    println!(
        "  crypto floor (chain, tag, PII): {:>8.1} MB/s  {:>10.0} records/s  ratio {:.2} (the most verification with keys can reach)",
        mbps(floor),
        rps(floor),
        bound.as_secs_f64() / floor.as_secs_f64()
    );
    let slots: usize = parsed
        .iter()
        .flat_map(|(_, r)| r.iter().map(|p| p.slots.len()))
        .sum();
    println!(
        "  personal-data slots: {:.2} per record (each costs a salt derivation and a commitment)",
        slots as f64 / built.records as f64
    );
    // The ratio to the bound and the verdict: one thread against the one-core bound.
    let ratio = bound.as_secs_f64() / with_keys_1t.as_secs_f64();
    println!(
        "  verify with keys, 1 thread     {:>8.1} MB/s  {:>10.0} records/s  ratio {ratio:.2} ({}; target >= 0.70; both on one core)  {:.2} us/record",
        mbps(with_keys_1t),
        rps(with_keys_1t),
        if ratio >= 0.7 { "met" } else { "MISSED" },
        with_keys_1t.as_secs_f64() * 1e6 / built.records as f64
    );
    for (name, d) in [
        ("verify with keys", with_keys),
        ("verify without keys", without),
    ] {
        println!(
            "  {name:<30} {:>8.1} MB/s  {:>10.0} records/s  {:.2} us/record  (on {cores} cores: wall time, not compared with the one-core bound)",
            mbps(d),
            rps(d),
            d.as_secs_f64() * 1e6 / built.records as f64
        );
    }
    println!(
        "  crypto floor / verify with keys, 1 thread: {:.2} (share of one core's verification time spent on unavoidable hashing); {cores} threads / 1: {:.2}x",
        floor.as_secs_f64() / with_keys_1t.as_secs_f64(),
        with_keys_1t.as_secs_f64() / with_keys.as_secs_f64()
    );
    println!(
        "  SQLite peer, same events: {:.1} MB (table + 4 indexes, {:.0} B/row)",
        built.sqlite_bytes as f64 / 1e6,
        built.sqlite_bytes as f64 / built.records as f64
    );
    // Each SQLite walk against the verify on the same number of cores (1 thread: the
    // one-thread verify; `cores` threads: the default verify).
    for (name, d, ours) in [
        (
            "SQLite re-verify, 1 thread".to_string(),
            sql_1t,
            with_keys_1t,
        ),
        (
            format!("SQLite re-verify, {cores} threads"),
            sql_par,
            with_keys,
        ),
    ] {
        let ratio = d.as_secs_f64() / ours.as_secs_f64();
        println!(
            "  {name:<30} {:>10.0} rows/s  {:.2} us/row  {:.1} MB/s of database   verify with keys on as many threads / it: {ratio:.2}x (target >= 5: {}); default verify / it: {:.2}x",
            rps(d),
            d.as_secs_f64() * 1e6 / built.records as f64,
            built.sqlite_bytes as f64 / 1e6 / d.as_secs_f64(),
            if ratio >= 5.0 { "met" } else { "MISSED" },
            d.as_secs_f64() / with_keys.as_secs_f64()
        );
    }
    println!(
        "  load average: after criterion {load_after_criterion}; at the end {}",
        loadavg()
    );
    drop(tmp);
}
